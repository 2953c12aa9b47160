#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Stage-2 init of the lab's crash kernel (PID 1 after the lab initramfs has
# switched into the host root overlay, exactly as for init.sh; see
# drgn_p2p/lab/kdump.py).  It
#   - mounts the pseudo file systems and the "out" share at /out,
#   - reads /out/kdump.env (QP_FILTERS: makedumpfile dump levels;
#     QP_MAKEDUMPFILE: the command that runs makedumpfile),
#   - copies /proc/vmcore whole to /out/kdump/vmcore.elf,
#   - writes /out/kdump/vmcore.d<N> with "makedumpfile -d N" for each level
#     (kdump-compressed, pages stored uncompressed),
#   - logs every step with its status to /out/kdump/kdump.log, its duration
#     to /out/kdump/timings, writes /out/kdump/done,
#   - and powers off.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LC_ALL=C TERM=dumb

power_off() {
	sync
	echo o > /proc/sysrq-trigger
	sleep 30
}

uptime_s() {
	cut -d' ' -f1 /proc/uptime
}

# step NAME CMD...: run CMD, log its status, record its duration under NAME.
step() {
	local name=$1 t0 rc
	shift
	t0=$(uptime_s)
	echo "kdump: $name: $*"
	"$@"
	rc=$?
	echo "kdump: $name: status $rc"
	echo "$name $(echo "$(uptime_s) - $t0" | bc)" >> /out/kdump/timings
	return $rc
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -sfn /proc/self/fd /dev/fd
mkdir -p /out
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out; then
	echo "kdump: cannot mount the out share"
	power_off
fi
mkdir -p /out/kdump
exec > >(tee -a /out/kdump/kdump.log > /dev/console) 2>&1
echo "crash $(uptime_s)" >> /out/kdump/timings
echo "kdump: stage 2 at $(uptime_s) s; $(ls -l /proc/vmcore)"

QP_FILTERS= QP_MAKEDUMPFILE=
# shellcheck source=/dev/null
. /out/kdump.env

if [ -e /proc/vmcore ]; then
	step copy cp /proc/vmcore /out/kdump/vmcore.elf.tmp && mv /out/kdump/vmcore.elf.tmp /out/kdump/vmcore.elf
	for level in $QP_FILTERS; do
		# shellcheck disable=SC2086 # QP_MAKEDUMPFILE is a shell-quoted command line
		eval "step d$level $QP_MAKEDUMPFILE -d $level /proc/vmcore /out/kdump/vmcore.d$level.tmp" \
			&& mv "/out/kdump/vmcore.d$level.tmp" "/out/kdump/vmcore.d$level"
	done
else
	echo "kdump: no /proc/vmcore (not a crash kernel?)"
fi
sync
echo "kdump: done at $(uptime_s) s"
uptime_s > /out/kdump/done
power_off
