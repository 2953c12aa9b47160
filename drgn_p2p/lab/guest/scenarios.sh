# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
#
# Guest-side scenario setup, sourced by init.sh.  One scn_<name> function per
# scenario (dashes become underscores).  A function returns 0 once its holder
# process holds the mapping; otherwise it returns non-zero with the reason in
# QP_REASON, which is recorded in /out/skipped.json.  Its output goes to
# /out/logs/<name>.log.
#
# From /out/config.env: QP_SCENARIOS, QP_HOLDER, QP_TEST_HMM, QP_EXPECT[name],
# QP_OF_PMEM[name].

QP_REASON=

# Run a command; on failure set QP_REASON to it and its status.
step() {
	"$@" && return 0
	QP_REASON="$* failed (status $?)"
	return 1
}

fail() {
	QP_REASON=$*
	return 1
}

# Wait up to $1 tenths of a second for the command "${@:2}" to succeed.
wait_for() {
	local n=$1 i
	shift
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# Is process $1 gone (exited, possibly a zombie)?
gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[ "${stat:0:1}" = Z ]
}

# hold SCENARIO MODE [ARG...]: start the holder and wait until it has
# recorded its mapping(s) in /out/holders/SCENARIO.txt.
hold() {
	local s=$1 f=/out/holders/$1.txt pid i
	shift
	"$QP_HOLDER" "$f" "$s" "${QP_EXPECT[$s]}" "$@" &
	pid=$!
	for ((i = 0; i < 600; i++)); do
		[ -e "$f" ] && return 0
		if gone "$pid"; then
			wait "$pid"
			fail "holder $* exited with status $?"
			return 1
		fi
		sleep 0.1
	done
	kill -9 "$pid"
	fail "holder $* did not record a mapping within 60 s"
}

# --- helpers for devices -------------------------------------------------

# First "key": "value" of a JSON document on stdin (ndctl output).
json_field() {
	sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n 1
}

# The nd region whose physical start is $1 (e.g. 0x40000000).
region_at() {
	local r
	for r in /sys/bus/nd/devices/region*; do
		[ -e "$r/resource" ] || continue
		if (( $(cat "$r/resource") == $1 )); then
			basename "$r"
			return 0
		fi
	done
	return 1
}

# Size in bytes of BAR $2 of PCI device directory $1.
bar_size() {
	local start end flags
	read -r start end flags < <(sed -n "$(($2 + 1))p" "$1/resource")
	(( end > start )) && echo $(( end - start + 1 )) || echo 0
}

# BDF of the PCI device with vendor $1, device $2 and a BAR 2 of $3 bytes
# (any size when $3 is empty).
pci_find() {
	local d
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = "$1" ] && [ "$(cat "$d/device")" = "$2" ] || continue
		if [ -z "$3" ] || [ "$(bar_size "$d" 2)" = "$3" ]; then
			basename "$d"
			return 0
		fi
	done
	return 1
}

# Name of the DRM card driven by driver $1, or whose device is called $1
# (vgem's device has no driver).
drm_card() {
	local c drv dev
	for c in /sys/class/drm/card[0-9]*; do
		[[ $c == *-* ]] && continue
		drv=$(readlink -f "$c/device/driver")
		dev=$(readlink -f "$c/device")
		[ "${drv##*/}" = "$1" ] || [ "${dev##*/}" = "$1" ] && { basename "$c"; return 0; }
	done
	return 1
}

pmem_modules() {
	modprobe -a nd_e820 nd_pmem dax_pmem device_dax 2>&1
	return 0
}

# pmem_namespace ADDR JSON OPTION...: reconfigure the namespace of the nd
# region at physical address ADDR with ndctl OPTIONs; ndctl's JSON goes to JSON.
pmem_namespace() {
	local addr=$1 json=$2 region
	shift 2
	pmem_modules
	wait_for 100 region_at "$addr" > /dev/null ||
		{ fail "no nd region at $addr (memmap= missing or nd_e820 not loaded)"; return 1; }
	region=$(region_at "$addr")
	ndctl create-namespace -f -e "namespace${region#region}.0" "$@" > "$json" ||
		{ fail "ndctl create-namespace $* on $region failed"; return 1; }
	cat "$json"
}

# --- scenarios -----------------------------------------------------------

scn_anon() { hold anon anon; }
scn_zero_page() { hold zero-page zero; }
scn_protnone() { hold protnone protnone; }

scn_thp() {
	local f=/sys/kernel/mm/transparent_hugepage/enabled
	grep -q '\[never\]' "$f" && echo madvise > "$f"
	hold thp thp
}

# A swap device: zram0, set up by the first scenario that needs one.
swap_on() {
	grep -q '^/dev/zram0 ' /proc/swaps && return 0
	step modprobe zram num_devices=1 || return
	wait_for 50 test -e /sys/block/zram0/disksize || { fail "no zram0"; return 1; }
	echo 64M > /sys/block/zram0/disksize || { fail "setting zram0 disksize failed"; return 1; }
	step mkswap /dev/zram0 || return
	step swapon /dev/zram0
}

scn_swap() { swap_on && hold swap swap; }

# zswap in front of the swap device while the holder pages out, then off
# again (what it stored stays there): its PTEs are ordinary swap entries.
scn_zswap() {
	local f=/sys/module/zswap/parameters/enabled rc
	swap_on || return
	echo Y > "$f" || { fail "cannot enable zswap"; return 1; }
	hold zswap zswap
	rc=$?
	((rc == 0)) || QP_REASON="$QP_REASON; zswap: $(grep -H . /sys/module/zswap/parameters/* | tr '\n' ' ')$(dmesg | grep -i zswap | tail -n 3 | tr '\n' ' ')"
	echo N > "$f"
	return $rc
}

# NUMA balancing on while the holder runs (one node is enough: the sysctl
# switches it on, and task_numa_work() marks pages whatever node they are
# on, for a multi-threaded process), off again once its entries are made.
scn_numa_hint() {
	local f=/proc/sys/kernel/numa_balancing rc
	echo 1 > "$f" || { fail "cannot enable NUMA balancing"; return 1; }
	hold numa-hint numa-hint
	rc=$?
	echo 0 > "$f"
	return $rc
}

scn_fsdax() {
	local dev mnt
	pmem_namespace 0x40000000 /tmp/qp-fsdax.json -m fsdax --map=dev || return
	dev=$(json_field blockdev < /tmp/qp-fsdax.json)
	[ -n "$dev" ] || { fail "ndctl printed no blockdev"; return 1; }
	# A 2 MiB stripe: mballoc aligns large allocations to it (the holder's PMD file).
	step mkfs.ext4 -q -F -b 4096 -E nodiscard,stride=512,stripe_width=512 "/dev/$dev" || return
	mnt=$(mktemp -d /tmp/qp-fsdax.XXXXXX)
	step mount -o dax "/dev/$dev" "$mnt" || return
	hold fsdax file "$mnt/held" pmd
}

# of_pmem_claim SCENARIO SEED [ALIGN]: hand the raw namespace of the
# label-less nd region of SCENARIO's pmem-region node (at QP_OF_PMEM[SCENARIO])
# to the region's SEED device (pfn_seed or dax_seed) with the memmap on the
# device and, if given, an ALIGN of bytes, and enable it: the sysfs writes of
# "ndctl create-namespace -m fsdax|devdax --map=dev [--align=...]" (uuid,
# location, align, namespace, then bind). Sets QP_SEED to the seed device and
# QP_NS to the namespace.
of_pmem_claim() {
	local nd=/sys/bus/nd base=${QP_OF_PMEM[$1]} region ns seed drv
	[ -n "$base" ] || { fail "no pmem-region node for $1 in config.env"; return 1; }
	wait_for 100 region_at "$base" > /dev/null ||
		{ fail "no nd region at $base (pmem-region node missing from the DTB?)"; return 1; }
	region=$(region_at "$base")
	ns=namespace${region#region}.0
	wait_for 100 test -e "$nd/devices/$ns" || { fail "no $ns in $region"; return 1; }
	# Namespaces register asynchronously; wait_probe flushes them (and nd_pmem's probes).
	cat "$nd/devices/$region"/../wait_probe > /dev/null
	seed=$(cat "$nd/devices/$region/$2") && [ -n "$seed" ] || { fail "$region has no $2"; return 1; }
	case $2 in pfn_seed) drv=nd_pmem ;; dax_seed) drv=dax_pmem ;; esac
	[ -e "$nd/drivers/nd_pmem/$ns" ] && echo "$ns" > "$nd/drivers/nd_pmem/unbind"
	cat /proc/sys/kernel/random/uuid > "$nd/devices/$seed/uuid" && echo pmem > "$nd/devices/$seed/mode" &&
		{ [ -z "$3" ] || echo "$3" > "$nd/devices/$seed/align"; } &&
		echo "$ns" > "$nd/devices/$seed/namespace" &&
		echo "$seed" > "$nd/drivers/$drv/bind" || { fail "configuring $seed on $ns failed"; return 1; }
	QP_SEED=$seed QP_NS=$ns
}

# fsdax on a DT pmem region: the pfn seed in front of nd_pmem, an ext2-format
# file system (busybox) mounted with the ext4 driver, -o dax.
scn_fsdax_of() {
	local nd=/sys/bus/nd pfn dev mnt bs
	step modprobe -a of_pmem nd_pmem ext4 || return
	of_pmem_claim fsdax-of pfn_seed || return
	pfn=$QP_SEED
	dev=$(ls "$nd/devices/$pfn/block" 2> /dev/null)
	[ -n "$dev" ] || { fail "$pfn has no block device"; return 1; }
	wait_for 50 test -b "/dev/$dev" || { fail "/dev/$dev did not appear"; return 1; }
	# DAX needs file system blocks of the kernel's page size (16 KiB on
	# -arm64-16k); busybox mke2fs wants bytes per inode of at least a block.
	bs=$(awk '/KernelPageSize/ {print $2 * 1024; exit}' /proc/self/smaps)
	step mke2fs -F -b "$bs" -i $((bs * 4)) "/dev/$dev" || return
	mnt=$(mktemp -d /tmp/qp-fsdax.XXXXXX)
	step mount -t ext4 -o dax "/dev/$dev" "$mnt" || return
	hold fsdax-of file "$mnt/held"
}

# device-dax on a DT pmem region: the dax seed with dax_pmem, aligned to the
# running kernel's PMD_SIZE (2 MiB with 4 KiB pages, 32 MiB with 16 KiB), which
# gives device_dax's /dev/daxR.N for namespaceR.N (dax_pmem names it so).
scn_devdax_of() {
	local align dax
	step modprobe -a of_pmem dax_pmem device_dax || return
	align=$(cat /sys/kernel/mm/transparent_hugepage/hpage_pmd_size) ||
		{ fail "no hpage_pmd_size (CONFIG_TRANSPARENT_HUGEPAGE off?)"; return 1; }
	of_pmem_claim devdax-of dax_seed "$align" || return
	dax=dax${QP_NS#namespace}
	wait_for 50 test -c "/dev/$dax" || { fail "/dev/$dax did not appear"; return 1; }
	hold devdax-of devdax "/dev/$dax"
}

scn_devdax() {
	local dev
	pmem_namespace 0x60000000 /tmp/qp-devdax.json -m devdax --align=2M || return
	dev=$(json_field chardev < /tmp/qp-devdax.json)
	[ -n "$dev" ] || { fail "ndctl printed no chardev"; return 1; }
	wait_for 50 test -c "/dev/$dev" || { fail "/dev/$dev did not appear"; return 1; }
	hold devdax devdax "/dev/$dev"
}

scn_pcibar() {
	local size=$((16 << 20)) bdf
	bdf=$(pci_find 0x1af4 0x1110 "$size") || { fail "no ivshmem with a 16 MiB BAR 2"; return 1; }
	hold pcibar resource "/sys/bus/pci/devices/$bdf/resource2" "$size"
}

scn_vfio_huge() {
	local bdf dev group
	bdf=$(pci_find 0x1af4 0x1110 $((1 << 30))) || { fail "no ivshmem with a 1 GiB BAR 2"; return 1; }
	dev=/sys/bus/pci/devices/$bdf
	# vfio names its type1 IOMMU backend only as a soft dependency, which
	# busybox modprobe does not follow.
	step modprobe -a vfio-pci vfio_iommu_type1 || return
	[ -e "$dev/iommu_group" ] || { fail "$bdf has no IOMMU group (intel-iommu or SMMUv3 not active)"; return 1; }
	echo vfio-pci > "$dev/driver_override"
	echo "$bdf" > /sys/bus/pci/drivers_probe
	group=$(basename "$(readlink "$dev/iommu_group")")
	wait_for 50 test -c "/dev/vfio/$group" || { fail "/dev/vfio/$group did not appear"; return 1; }
	hold vfio-huge vfio "/dev/vfio/$group" "$bdf"
}

p2pmem_published() {
	[ "$(cat "/sys/bus/pci/devices/$1/p2pmem/published" 2>/dev/null)" = 1 ]
}

scn_p2pdma() {
	local bdf
	bdf=$(pci_find 0x1b36 0x0010 "") || { fail "no QEMU nvme device"; return 1; }
	step modprobe nvme || return
	wait_for 150 p2pmem_published "$bdf" || { fail "$bdf published no p2pmem"; return 1; }
	hold p2pdma p2pmem "/sys/bus/pci/devices/$bdf/p2pmem/allocate"
}

# qxl is TTM-based on every kernel; bochs was TTM (drm_gem_vram) until it
# moved to GEM shmem, so it is only the fallback.
scn_drm_ttm() {
	local mod drv card=
	# module:driver (bochs.ko registers the PCI driver "bochs-drm").
	for mod in qxl:qxl bochs:bochs-drm; do
		drv=${mod#*:}
		modprobe "${mod%%:*}" || continue
		wait_for 300 drm_card "$drv" > /dev/null && card=$(drm_card "$drv") && break
	done
	[ -n "$card" ] || { fail "neither qxl nor bochs gave a DRM card"; return 1; }
	echo "drm-ttm: $drv on $card"
	hold drm-ttm dumb "/dev/dri/$card"
}

# Load test_hmm once, with the parameters every test_hmm scenario needs;
# wait for its device $1.
test_hmm_device() {
	[ -n "$QP_TEST_HMM" ] || { fail "no test_hmm.ko supplied"; return 1; }
	if [ ! -d /sys/module/test_hmm ]; then
		# shellcheck disable=SC2086
		step insmod "$QP_TEST_HMM" $QP_TEST_HMM_ARGS || return
	fi
	wait_for 50 test -c "$1" || { fail "$1 did not appear"; return 1; }
}

scn_device_private() {
	test_hmm_device /dev/hmm_dmirror0 || return
	hold device-private hmm /dev/hmm_dmirror0
}

scn_device_coherent() {
	test_hmm_device /dev/hmm_dmirror2 || return
	hold device-coherent hmm-coherent /dev/hmm_dmirror2
}

# --- the zoo: legitimate mappings made by the kernel's own code paths ----

scn_p2pdma_ro() {
	local bdf
	bdf=$(pci_find 0x1b36 0x0010 "") || { fail "no QEMU nvme device"; return 1; }
	step modprobe nvme || return
	wait_for 150 p2pmem_published "$bdf" || { fail "$bdf published no p2pmem"; return 1; }
	hold p2pdma-ro p2pmem-ro "/sys/bus/pci/devices/$bdf/p2pmem/allocate"
}

scn_perf_ring() { hold perf-ring perf; }

scn_packet_ring() {
	ip link set lo up 2>&1 || ifconfig lo up 2>&1
	hold packet-ring packet
}

scn_io_uring() { hold io-uring io-uring; }

scn_tcp_zc() {
	ip link set lo up 2>&1 || ifconfig lo up 2>&1
	hold tcp-zc tcp-zc
}
scn_io_uring_pbuf() { hold io-uring-pbuf io-uring-pbuf; }

scn_hugetlb_1g() {
	local f=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
	[ -e "$f" ] && (( $(cat "$f") > 0 )) ||
		{ fail "no 1 GiB huge page was allocated at boot (hugepagesz=1G hugepages=1)"; return 1; }
	hold hugetlb-1g hugetlb-1g
}

scn_hugetlb() {
	(( $(cat /proc/sys/vm/nr_hugepages) > 0 )) ||
		{ fail "no huge pages reserved (hugepages= missing from the command line?)"; return 1; }
	hold hugetlb hugetlb
}

scn_shmem_thp() {
	local f=/sys/kernel/mm/transparent_hugepage/shmem_enabled
	echo advise > "$f" || { fail "cannot set $f to advise"; return 1; }
	hold shmem-thp shmem-thp
}

# ksmd scans quickly until the holder's pages are merged, then stops
# (run=0 keeps merged pages merged).
scn_ksm() {
	local d=/sys/kernel/mm/ksm rc
	echo 1000 > "$d/pages_to_scan" && echo 10 > "$d/sleep_millisecs" && echo 1 > "$d/run" ||
		{ fail "cannot start ksmd"; return 1; }
	hold ksm ksm
	rc=$?
	echo 0 > "$d/run"
	return $rc
}

scn_secretmem() { hold secretmem secretmem; }
scn_uffd_wp() { hold uffd-wp uffd-wp; }
scn_guard() { hold guard guard; }
scn_guard_shmem() { hold guard-shmem guard-shmem; }
scn_hwpoison() { hold hwpoison hwpoison; }

scn_pcibar_wc() {
	local bdf f
	bdf=$(pci_find 0x1af4 0x1110 $((32 << 20))) || { fail "no ivshmem with a 32 MiB BAR 2"; return 1; }
	f=/sys/bus/pci/devices/$bdf/resource2_wc
	[ -e "$f" ] || { fail "$f missing (BAR 2 not prefetchable?)"; return 1; }
	hold pcibar-wc resource "$f" $((2 << 20))
}

# uio_pci_generic exposes each 32-bit non-prefetchable memory BAR as a map;
# ivshmem's only one is BAR 0 (its registers, read-only here): map 0.
scn_uio() {
	local bdf dev uio
	bdf=$(pci_find 0x1af4 0x1110 $((64 << 20))) || { fail "no ivshmem with a 64 MiB BAR 2"; return 1; }
	dev=/sys/bus/pci/devices/$bdf
	step modprobe uio_pci_generic || return
	echo uio_pci_generic > "$dev/driver_override"
	echo "$bdf" > /sys/bus/pci/drivers_probe
	wait_for 50 test -d "$dev/uio" || { fail "uio_pci_generic did not take $bdf"; return 1; }
	uio=$(ls "$dev/uio" | head -n 1)
	[ -e "$dev/uio/$uio/maps/map0" ] || { fail "$uio has no map 0 (BAR 0 not a plain memory BAR?)"; return 1; }
	wait_for 50 test -c "/dev/$uio" || { fail "/dev/$uio did not appear"; return 1; }
	# The whole map (whole pages), read where BAR 0 lies in it: its offset, not 0 with 16 KiB pages.
	hold uio devmem "/dev/$uio" 0 "$(cat "$dev/uio/$uio/maps/map0/size")" "$(cat "$dev/uio/$uio/maps/map0/offset")"
}

scn_udmabuf() {
	[ -c /dev/udmabuf ] || modprobe udmabuf
	wait_for 50 test -c /dev/udmabuf || { fail "/dev/udmabuf did not appear"; return 1; }
	hold udmabuf udmabuf /dev/udmabuf
}

scn_drm_vgem() {
	local card
	step modprobe vgem || return
	wait_for 100 drm_card vgem > /dev/null || { fail "vgem gave no DRM card"; return 1; }
	card=$(drm_card vgem)
	hold drm-vgem dumb "/dev/dri/$card"
}

# The card's device is the PCI function (driver virtio-pci), found by its id.
scn_drm_virtio_gpu() {
	local bdf card
	bdf=$(pci_find 0x1af4 0x1050 "") || { fail "no virtio-gpu PCI device"; return 1; }
	step modprobe virtio_gpu || return
	wait_for 100 drm_card "$bdf" > /dev/null || { fail "virtio-gpu gave no DRM card"; return 1; }
	card=$(drm_card "$bdf")
	hold drm-virtio-gpu dumb "/dev/dri/$card"
}

scn_dma_heap() {
	wait_for 50 test -c /dev/dma_heap/system || { fail "/dev/dma_heap/system did not appear"; return 1; }
	hold dma-heap dma-heap /dev/dma_heap/system
}

scn_vdso() { hold vdso vdso; }

# The fbdev device that driver $1's DRM fbdev emulation registered.
fb_of() {
	local f drv
	for f in /sys/class/graphics/fb[0-9]*; do
		drv=$(readlink -f "$f/device/driver")
		[ "${drv##*/}" = "$1" ] && { basename "$f"; return 0; }
	done
	return 1
}

scn_fbdev() {
	local fb
	step modprobe qxl || return
	wait_for 100 fb_of qxl > /dev/null || { fail "qxl registered no fbdev"; return 1; }
	fb=$(fb_of qxl)
	wait_for 50 test -c "/dev/$fb" || { fail "/dev/$fb did not appear"; return 1; }
	hold fbdev fbdev "/dev/$fb"
}

# The system BIOS area (e820 reserved, below 1 MiB): STRICT_DEVMEM lets
# /dev/mem map it (x86 devmem_is_allowed).
scn_devmem() { hold devmem devmem /dev/mem 0xf0000 0x10000; }

# --- driver --------------------------------------------------------------

# record_skip NAME REASON...: the reason, control characters removed.
record_skip() {
	local name=$1
	shift
	printf '%s' "$*" | tr -d '\000-\037' > "/out/skipped.d/$name"
}

run_one() {
	local s=$1 log=/out/logs/$1.log
	QP_REASON=
	echo "qp: scenario $s at $(cut -d' ' -f1 /proc/uptime) s"
	if "scn_${s//-/_}" >> "$log" 2>&1; then
		echo "qp: scenario $s held at $(cut -d' ' -f1 /proc/uptime) s"
		return 0
	fi
	record_skip "$s" "error: ${QP_REASON:-failed}; log: $(tail -n 3 "$log" | tr '\n' ' ')"
	echo "qp: scenario $s failed: $QP_REASON"
}

# Set up the scenarios one after the other.  (Running them concurrently on the
# guest's two CPUs was measured: no faster under TCG on a two-core host.)
run_scenarios() {
	local s
	mkdir -p /out/logs /out/holders /out/skipped.d
	for s in $QP_SCENARIOS; do
		run_one "$s"
	done
}

json_string() {
	local v=${1//\\/\\\\}
	printf '"%s"' "${v//\"/\\\"}"
}

# /out/manifest.txt, /out/mappings.json and /out/skipped.json.
write_results() {
	local kind pid addr len expect sep= name reason
	cat /out/holders/*.txt 2> /dev/null | put /out/manifest.txt
	{
		echo "["
		while read -r kind pid addr len expect; do
			printf '%s  {"kind": %s, "pid": %d, "addr": %d, "len": %d, "expect": %s}' \
				"$sep" "$(json_string "$kind")" "$pid" "$addr" "$len" "$(json_string "$expect")"
			sep=$',\n'
		done < /out/manifest.txt
		printf '\n]\n'
	} | put /out/mappings.json
	sep=
	{
		echo "{"
		while IFS=$'\t' read -r name reason; do
			printf '%s  %s: %s' "$sep" "$(json_string "$name")" "$(json_string "$reason")"
			sep=$',\n'
		done < <(
			cat /out/skipped.txt 2> /dev/null
			for f in /out/skipped.d/*; do
				[ -e "$f" ] && printf '%s\t%s\n' "${f##*/}" "$(cat "$f")"
			done
		)
		printf '\n}\n'
	} | put /out/skipped.json
}

# Stop the holders and unmount what the scenarios mounted.
release_scenarios() {
	local kind pid rest dev mnt
	while read -r kind pid rest; do
		kill "$pid" 2> /dev/null
	done < /out/manifest.txt
	sleep 0.2
	while read -r dev mnt rest; do
		[[ $mnt == /tmp/qp-* ]] && umount "$mnt"
	done < /proc/mounts
}
