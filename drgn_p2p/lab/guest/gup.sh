#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The GUP probe's guest side (drgn_p2p/lab/gup.py runs it with Guest.run):
#
#   gup.sh setup SERIAL NVME
#                         find the virtio-blk disk with serial SERIAL (the
#                         O_DIRECT target) and the namespace of the NVMe
#                         controller with serial NVME ("-": none), create a
#                         Soft-RoCE device (rdma_rxe over a dummy netdev) and
#                         write "DISK UVERBS NVME" to /out/gup-req; a part that
#                         cannot be set up is "-", and a "gup: …" line says why
#   gup.sh probe KIND...  send SIGUSR1 to the holder of each scenario KIND and
#                         wait until it has written /out/holders/KIND.txt.gup
#                         (holder.c, gup.h); print "gup: KIND done|died|
#                         oopsed|timeout" (oopsed: the kernel log shows an
#                         oops and the holder neither finished nor exited);
#                         with $GUP_FIRST, start at that user (gup.h); a
#                         holder is given $GUP_WAIT tenths of a second (1200)

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# wait_for, gone
# shellcheck source=scenarios.sh
. "$(dirname "$(readlink -f "$0")")/scenarios.sh"

# The device node /dev/NAME of the first /sys path of glob $1 whose attribute
# $2 reads $3 (spaces removed: NVMe pads its serial with them).
node_whose() {
	local d
	for d in $1; do
		[ "$(tr -d ' ' < "$d/$2" 2>/dev/null)" = "$3" ] && { echo "/dev/${d##*/}"; return 0; }
	done
	return 1
}

# setup_blockdev MODULE GLOB ATTRIBUTE VALUE: load MODULE, wait for the block
# device of GLOB whose ATTRIBUTE is VALUE and print its node.
setup_blockdev() {
	modprobe "$1" || { echo "gup: modprobe $1 failed" >&2; return 1; }
	wait_for 100 node_whose "$2" "$3" "$4" > /dev/null || { echo "gup: no block device $2 with $3 $4" >&2; return 1; }
	node_whose "$2" "$3" "$4"
}

setup_rxe() {
	local ib=qprxe0 net=qpgup0 dev
	modprobe -a rdma_rxe ib_uverbs dummy || { echo "gup: modprobe rdma_rxe ib_uverbs dummy failed" >&2; return 1; }
	if [ ! -e "/sys/class/infiniband/$ib" ]; then
		ip link add "$net" type dummy && ip link set "$net" up ||
			{ echo "gup: creating dummy netdev $net failed" >&2; return 1; }
		rdma link add "$ib" type rxe netdev "$net" ||
			{ echo "gup: rdma link add $ib type rxe netdev $net failed" >&2; return 1; }
	fi
	wait_for 100 node_whose "/sys/class/infiniband_verbs/uverbs*" ibdev "$ib" > /dev/null ||
		{ echo "gup: $ib has no uverbs device" >&2; return 1; }
	dev=/dev/infiniband/$(basename "$(node_whose "/sys/class/infiniband_verbs/uverbs*" ibdev "$ib")")
	wait_for 50 test -c "$dev" || { echo "gup: $dev did not appear" >&2; return 1; }
	echo "$dev"
}

setup() {
	local disk uverbs nvme=-
	disk=$(setup_blockdev virtio_blk "/sys/block/vd*" serial "$1") || disk=-
	uverbs=$(setup_rxe) || uverbs=-
	if [ "$2" != - ]; then
		nvme=$(setup_blockdev nvme "/sys/block/nvme*n*" device/serial "$2") || nvme=-
	fi
	echo "$disk $uverbs $nvme" > /out/gup-req.tmp && mv -f /out/gup-req.tmp /out/gup-req
	echo "gup: disk $disk uverbs $uverbs nvme $nvme"
}

# Whether the kernel log past line $1 holds an oops (a task that oopsed
# holding a lock may never exit: its holder is then neither done nor gone).
oopsed() {
	dmesg | tail -n +"$(($1 + 1))" | grep -qE 'Oops|BUG: unable to handle|general protection fault|kernel BUG'
}

probe() {
	local kind f pid i log until
	for kind in "$@"; do
		f=/out/holders/$kind.txt
		read -r _ pid _ < "$f" || { echo "gup: $kind has no manifest"; continue; }
		rm -f "$f.gup"
		echo "$(cat /out/gup-req) ${GUP_FIRST:-0}" > "$f.gup-req"
		log=$(dmesg | wc -l)
		kill -USR1 "$pid"
		# A deadline, not a count: on a loaded host each round takes far longer than 0.1 s.
		until=$((SECONDS + (${GUP_WAIT:-1200} + 9) / 10))
		for ((i = 0; SECONDS < until; i++)); do
			[ -e "$f.gup" ] && break
			gone "$pid" && break
			((i % 20 == 19)) && oopsed "$log" && sleep 1 && break
			sleep 0.1
		done
		if [ -e "$f.gup" ]; then
			echo "gup: $kind done"
		elif gone "$pid"; then
			echo "gup: $kind died"
		elif oopsed "$log"; then
			echo "gup: $kind oopsed"
		else
			echo "gup: $kind timeout"
		fi
	done
}

case $1 in
setup) setup "$2" "$3" ;;
probe) shift; probe "$@" ;;
*) echo "usage: gup.sh setup SERIAL NVME | probe KIND..." >&2; exit 2 ;;
esac
