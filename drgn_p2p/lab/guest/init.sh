#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Stage-2 init of a lab guest (PID 1, run by the initramfs after switch_root
# into the host root overlay).  It
#   - mounts the pseudo file systems and the "out" results share at /out,
#   - links the kernel's modules from the host cache into /lib/modules,
#   - loads qemu_fw_cfg (drgn --qemu and vmcores need the vmcoreinfo it exposes),
#   - sets up every scenario named in /out/config.env (guest/scenarios.sh),
#   - writes /out/mappings.json, /out/skipped.json and then /out/ready,
#   - runs commands the host drops in /out/cmd/ until /out/release appears,
#   - and powers off.
# Nothing here may stop the boot: failures are recorded in /out.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LC_ALL=C TERM=dumb
here=$(dirname "$(readlink -f "$0")")

power_off() {
	sync
	echo o > /proc/sysrq-trigger
	sleep 30
}

mount_pseudo() {
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	mkdir -p /dev/pts /dev/shm
	mount -t devpts devpts /dev/pts
	mount -t tmpfs tmpfs /dev/shm
	mount -t tmpfs tmpfs /run
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	ln -sfn /proc/self/fd /dev/fd
	ln -sfn /proc/self/fd/0 /dev/stdin
	ln -sfn /proc/self/fd/1 /dev/stdout
	ln -sfn /proc/self/fd/2 /dev/stderr
}

uptime_s() {
	cut -d' ' -f1 /proc/uptime
}

# Atomically write stdin to a file on /out.
put() {
	cat > "$1.tmp" && mv -f "$1.tmp" "$1"
}

link_modules() {
	[ -n "$QP_MODDIR" ] || { echo "qp: the kernel has no module directory"; return; }
	rm -rf "/lib/modules/$QP_KVER"
	mkdir -p /lib/modules
	ln -sfn "$QP_MODDIR" "/lib/modules/$QP_KVER"
}

# Run the host's commands: /out/cmd/N.sh -> N.out, N.rc (N.timeout in seconds).
# N.rc is written with a single write of "status\n"; the host waits for the
# newline.  The loop forks nothing while idle (a TCG guest pays dearly for
# fork+exec): it sleeps with a read timeout on a FIFO that nobody writes.
agent_loop() {
	local f n t tick
	mkdir -p /out/cmd
	mkfifo /run/qp-tick
	exec {tick}<> /run/qp-tick
	while [ ! -e /out/release ]; do
		for f in /out/cmd/*.sh; do
			[ -e "$f" ] || continue
			n=${f%.sh}
			[ -e "$n.rc" ] && continue
			read -r t < "$n.timeout" || t=600
			(cd / && exec timeout -k 5 "$t" bash "$f" < /dev/null > "$n.out" 2>&1)
			printf '%d\n' $? > "$n.rc"
		done
		read -r -t 0.2 -u "$tick"
	done
}

shutdown_guest() {
	echo "qp: release at $(uptime_s)"
	release_scenarios
	power_off
}

mount_pseudo
mkdir -p /out
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out; then
	echo "qp: cannot mount the out share"
	power_off
fi
exec > >(tee -a /out/init.log > /dev/console) 2>&1
uptime_s | put /out/stage2
echo "qp: stage 2 at $(uptime_s) s"

# shellcheck source=/dev/null
. /out/config.env
link_modules
modprobe qemu_fw_cfg || echo "qp: modprobe qemu_fw_cfg failed (drgn --qemu will not find vmcoreinfo)"

# shellcheck source=scenarios.sh
. "$here/scenarios.sh"
run_scenarios
write_results
uptime_s | put /out/ready
echo "qp: ready at $(uptime_s) s"
agent_loop
shutdown_guest
