#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run the kernel's mm selftests one after another (started detached by
# drgn_p2p/lab/selftests.py through the guest's command agent).
#
#   selftests.sh STATE
#
# STATE/plan.tsv has one line per test: name<TAB>timeout<TAB>command.  For
# each test this writes STATE/current (its name, while it runs),
# STATE/NAME.log (its output) and STATE/NAME.rc ("status seconds"), and at
# the end STATE/done.

state=$1
cd "$(mktemp -d /tmp/selftests.XXXXXX)" || exit 1

# Huge pages for the hugetlb cases (2 MiB each; the tests skip without).
hp=/proc/sys/vm/nr_hugepages
[ -w "$hp" ] && echo $(( $(cat "$hp") + 32 )) > "$hp"

now() { cut -d' ' -f1 /proc/uptime; }

while IFS=$'\t' read -r name limit command; do
	[ -n "$name" ] || continue
	printf '%s\n' "$name" > "$state/current.tmp" && mv -f "$state/current.tmp" "$state/current"
	t0=$(now)
	timeout -k 10 "$limit" bash -c "$command" > "$state/$name.log" 2>&1 < /dev/null
	rc=$?
	t1=$(now)
	printf '%d %s\n' "$rc" "$(echo "$t1 - $t0" | bc)" > "$state/$name.rc.tmp"
	mv -f "$state/$name.rc.tmp" "$state/$name.rc"
done < "$state/plan.tsv"
: > "$state/current"
date +%s > "$state/done"
