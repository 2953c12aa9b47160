# SPDX-License-Identifier: GPL-2.0-or-later
"""
Scenarios
---------

A scenario is one kind of mapping that the guest creates and holds in a live
process: what QEMU and the kernel command line must provide for it, which
kernel configuration it needs, and what a page-table walk is expected to
find there (the ``expect`` column of the manifest).

:func:`plan` decides from a kernel's configuration which of the requested
scenarios can run and why the others cannot. The guest side lives in
``guest/scenarios.sh`` (one ``scn_<name>`` function per scenario) and
``guest/holder.c`` (one mode per kind of mapping), which :func:`holder_binary`
compiles once per host into the cache.
"""

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from drgn_p2p.lab import LabError, cache_dir

__all__ = (
    "GUEST_DIR",
    "NVME_CMB_ID",
    "SCENARIOS",
    "ZOO",
    "Plan",
    "Scenario",
    "expect_of",
    "guest_binary",
    "holder_binary",
    "kernel_config",
    "kernel_version",
    "names",
    "plan",
)

#: Guest-side scripts and sources shipped with the package.
GUEST_DIR = Path(__file__).resolve().parent / "guest"

#: Environment variable naming a test_hmm.ko for the ``device-private`` scenario.
TEST_HMM_ENV = "DRGN_P2P_TEST_HMM"


@dataclass(frozen=True)
class Scenario:
    """One kind of held mapping."""

    #: Name, also the manifest's ``kind`` column.
    name: str
    #: What the walk should find (the manifest's ``expect`` column).
    expect: str
    #: Every one of these config options must be ``y`` or ``m``.
    requires: Tuple[str, ...] = ()
    #: At least one of these must be ``y`` or ``m`` (when not empty).
    requires_any: Tuple[str, ...] = ()
    #: QEMU arguments that must come before every other device.
    early_qemu_args: Tuple[str, ...] = ()
    #: QEMU arguments (devices and their backends).
    qemu_args: Tuple[str, ...] = ()
    #: Kernel command line words.
    cmdline: Tuple[str, ...] = ()
    #: Added to the reason when the kernel's configuration rules it out.
    note: str = ""
    #: The first release (major, minor) whose code has the shape, for shapes
    #: that no config option tells apart; ``note`` names the change.
    since: Optional[Tuple[int, int]] = None
    #: Guest memory (MiB) the scenario needs when the lab's default is too
    #: little (0: the default). Such a scenario boots alone: the default set
    #: (:func:`plan` with no names) skips it, saying so; it runs when named.
    memory_mib: int = 0
    #: Guest memory (MiB) the scenario needs, in any set of scenarios (0: the
    #: default); unlike :attr:`memory_mib` it does not make the scenario boot alone.
    guest_mib: int = 0
    #: test_hmm module parameters the scenario needs (its coherent devices' memory).
    test_hmm_args: Tuple[str, ...] = ()
    #: Properties of QEMU's ``-machine`` (``iommu=smmuv3`` on arm64's virt).
    machine_props: Tuple[str, ...] = ()
    #: The scenario on another Debian architecture, when what QEMU, the kernel
    #: or the walk must provide differs there: (arch, Scenario of the same name).
    arches: Tuple[Tuple[str, "Scenario"], ...] = ()
    #: Why the shape cannot be made at all there, when no config option says
    #: so (a device QEMU lacks, a rule of the architecture's code): the plan
    #: skips it with this reason. Set in an :attr:`arches` form.
    unavailable: str = ""

    def on(self, arch: str) -> "Scenario":
        """The scenario as it runs on Debian architecture *arch*."""
        return dict(self.arches).get(arch, self)


_PMEM = ("CONFIG_ZONE_DEVICE", "CONFIG_X86_PMEM_LEGACY", "CONFIG_LIBNVDIMM")

#: Physical addresses of the memory test_hmm's coherent devices 2 and 3 use:
#: 256 MiB each (its chunk size, allocated for both devices when it loads),
#: in the guest's low RAM between the pmem ranges, reserved with memmap=$.
COHERENT_BASES = (0x5000_0000, 0x7000_0000)
#: The same on arm64: 256 MiB each of QEMU virt's RAM past the DT pmem nodes
#: (OF_PMEM_RANGES), which ``mem=`` (ARM64_RAM_LIMIT) leaves out of System RAM.
ARM64_COHERENT_BASES = (0xE000_0000, 0xF000_0000)
#: The kernel command line word that keeps an arm64 guest's RAM below the DT pmem and coherent memory.
ARM64_RAM_LIMIT = "mem=2048M"

#: Scenarios that load test_hmm.
_TEST_HMM_SCENARIOS = ("device-private", "device-coherent")

#: The 16 MiB ivshmem BAR of ``pcibar``.
_IVSHMEM16 = (
    "-object", "memory-backend-memfd,id=qp-ivs0,size=16M,share=on",
    "-device", "ivshmem-plain,memdev=qp-ivs0",
)
#: The 1 GiB ivshmem BAR of ``vfio-huge``.
_IVSHMEM1G = (
    "-object", "memory-backend-memfd,id=qp-ivs1,size=1G,share=on",
    "-device", "ivshmem-plain,memdev=qp-ivs1",
)
#: The QEMU id of the NVMe controller whose CMB hosts p2pmem (the GUP probe
#: gives it a namespace: O_DIRECT there may move P2PDMA pages).
NVME_CMB_ID = "qpnvme0"
#: That controller (``p2pdma``, ``p2pdma-ro``); its serial is its id.
_NVME_CMB = ("-device", f"nvme,id={NVME_CMB_ID},serial={NVME_CMB_ID},cmb_size_mb=64")
_P2PDMA = ("CONFIG_PCI_P2PDMA", "CONFIG_BLK_DEV_NVME")
#: The display devices of ``drm-ttm`` (qxl also backs ``fbdev``).
_QXL_BOCHS = ("-device", "qxl", "-device", "bochs-display")
#: The 32 MiB ivshmem BAR of ``pcibar-wc``.
_IVSHMEM32 = ("-object", "memory-backend-memfd,id=qp-ivs2,size=32M,share=on", "-device", "ivshmem-plain,memdev=qp-ivs2")

#: The zoo: legitimate mappings that kernels and drivers create through their
#: own code paths, held next to the lab's own scenarios in the same boot.
ZOO: Tuple[Scenario, ...] = (
    # p2pmem_alloc_mmap() checks VM_MAYSHARE only; do_mmap() drops VM_SHARED
    # from a MAP_SHARED mapping of a file opened read-only.
    Scenario("p2pdma-ro", "p2pdma-ro", requires=_P2PDMA, qemu_args=_NVME_CMB),
    Scenario("perf-ring", "perf-ring", requires=("CONFIG_PERF_EVENTS",)),
    Scenario("packet-ring", "mixedmap-ram", requires=("CONFIG_PACKET",)),
    Scenario("io-uring", "mixedmap-ram", requires=("CONFIG_IO_URING",)),
    Scenario("tcp-zc", "mixedmap-ram", requires=("CONFIG_INET",)),
    Scenario(
        "io-uring-pbuf", "mixedmap-ram", requires=("CONFIG_IO_URING",), since=(6, 4),
        note="IOU_PBUF_RING_MMAP, c56e022c0a27",
    ),
    Scenario("hugetlb", "hugetlb-pmd", requires=("CONFIG_HUGETLBFS",), cmdline=("hugepages=2",)),
    # A free, 1 GiB-aligned GiB of RAM for the boot-time allocation: the default
    # guest's RAM ends at 2.5 GiB with [1, 2) GiB reserved for pmem and coherent
    # memory. With 3.5 GiB, q35 puts 1.5 GiB above 4 GiB, past the 32-bit PCI
    # hole, which the other scenarios must not have (p2p_violate wants its BARs
    # above all RAM): a boot of its own.
    Scenario("hugetlb-1g", "hugetlb-pud", requires=("CONFIG_HUGETLBFS",),
             cmdline=("hugepagesz=1G", "hugepages=1"), memory_mib=3584,
             # arm64 has a 1 GiB hstate with every granule, but only with 4K
             # pages is it one PUD leaf (16K: 32 contiguous PMDs, 64K: 2048
             # contiguous PTEs; arch/arm64/mm/hugetlbpage.c).
             arches=(("arm64", Scenario("hugetlb-1g", "hugetlb-pud", requires=("CONFIG_HUGETLBFS", "CONFIG_ARM64_4K_PAGES"),
                                        cmdline=("hugepagesz=1G", "hugepages=1"), memory_mib=3584)),)),
    Scenario("shmem-thp", "thp-pmd-shared", requires=("CONFIG_TRANSPARENT_HUGEPAGE", "CONFIG_SHMEM")),
    Scenario("ksm", "ksm", requires=("CONFIG_KSM",)),
    # memfd_secret() is off by default before 6.5 (secretmem.enable=0).
    Scenario("secretmem", "secretmem", requires=("CONFIG_SECRETMEM",), cmdline=("secretmem.enable=1",)),
    Scenario("uffd-wp", "uffd-wp", requires=("CONFIG_USERFAULTFD", "CONFIG_PTE_MARKER_UFFD_WP")),
    Scenario(
        "guard", "guard", since=(6, 13),
        note="MADV_GUARD_INSTALL, 662df3e5c376",
    ),
    Scenario(
        "guard-shmem", "guard", since=(6, 15),
        note="guard regions in file-backed mappings, f807123d578d",
    ),
    Scenario("hwpoison", "hwpoison", requires=("CONFIG_MEMORY_FAILURE",)),
    # NUMA balancing switched on for the holder alone (kernel.numa_balancing).
    Scenario("numa-hint", "numa-hint", requires=("CONFIG_NUMA_BALANCING",)),
    Scenario("zswap", "swap", requires=("CONFIG_ZSWAP", "CONFIG_SWAP", "CONFIG_ZRAM")),
    # An ivshmem of its own: were its BAR mapped uncached elsewhere (pcibar),
    # PAT's memtype reservation would downgrade this WC mapping to UC-. Larger
    # than pcibar's, so that p2p_violate (which takes the smallest free ivshmem
    # BAR) keeps using that one.
    Scenario(
        "pcibar-wc", "pfnmap-io-wc", requires=("CONFIG_PCI", "CONFIG_X86_PAT"),
        qemu_args=_IVSHMEM32,
        # arm64 always offers resourceN_wc (arch_can_pci_mmap_wc() is 1 in
        # arch/arm64/include/asm/pci.h): pgprot_writecombine(), MT_NORMAL_NC.
        arches=(("arm64", Scenario("pcibar-wc", "pfnmap-io-wc", requires=("CONFIG_PCI",), qemu_args=_IVSHMEM32)),),
    ),
    # uio_pci_generic on an ivshmem of its own (a 64 MiB BAR 2 tells it apart,
    # and keeps p2p_violate on pcibar's smaller one): its map 0 is BAR 0.
    Scenario(
        "uio", "pfnmap-io-uc", requires=("CONFIG_UIO_PCI_GENERIC",),
        qemu_args=(
            "-object", "memory-backend-memfd,id=qp-ivs3,size=64M,share=on",
            "-device", "ivshmem-plain,memdev=qp-ivs3",
        ),
    ),
    Scenario("udmabuf", "pfnmap-ram", requires=("CONFIG_UDMABUF",)),
    Scenario("drm-vgem", "pfnmap-ram", requires=("CONFIG_DRM_VGEM",)),
    Scenario("drm-virtio-gpu", "pfnmap-ram", requires=("CONFIG_DRM_VIRTIO_GPU",),
             qemu_args=("-device", "virtio-gpu-pci")),
    Scenario("dma-heap", "pfnmap-io-ram", requires=("CONFIG_DMABUF_HEAPS_SYSTEM",)),
    Scenario(
        "devmem", "pfnmap-io-ram", requires=("CONFIG_DEVMEM",),
        # x86's devmem_is_allowed() lets /dev/mem map the first MiB, RAM
        # included; arm64's refuses every RAM page (arch/arm64/mm/mmap.c).
        arches=(("arm64", Scenario(
            "devmem", "pfnmap-io-ram", requires=("CONFIG_DEVMEM",),
            unavailable="arm64's devmem_is_allowed() refuses RAM pages: /dev/mem cannot map RAM there")),),
    ),
    Scenario("vdso", "vdso"),
    # qxl's fbdev emulation: a vmalloc'd shadow buffer with deferred I/O.
    Scenario(
        "fbdev", "fbdev-defio", requires=("CONFIG_DRM_QXL", "CONFIG_DRM_FBDEV_EMULATION", "CONFIG_FB_DEFERRED_IO"),
        qemu_args=_QXL_BOCHS,
        arches=(("arm64", Scenario(
            "fbdev", "fbdev-defio", requires=("CONFIG_DRM_QXL",),
            unavailable="qemu-system-aarch64 has no qxl device, whose fbdev emulation this shape is")),),
    ),
)

#: Every scenario the lab knows, in the order the guest sets them up.
SCENARIOS: Tuple[Scenario, ...] = (
    Scenario("anon", "anon"),
    Scenario("thp", "thp-pmd", requires=("CONFIG_TRANSPARENT_HUGEPAGE",)),
    Scenario("zero-page", "zero-page"),
    Scenario("protnone", "protnone"),
    Scenario("swap", "swap", requires=("CONFIG_SWAP", "CONFIG_ZRAM")),
    Scenario(
        "fsdax", "fsdax",
        requires=_PMEM + ("CONFIG_FS_DAX", "CONFIG_BLK_DEV_PMEM", "CONFIG_EXT4_FS"),
        cmdline=("memmap=256M!1G",),
    ),
    # arm64: pmem from a device-tree "pmem-region" node (drivers/nvdimm/of_pmem.c),
    # which the lab adds to QEMU virt's DTB (OF_PMEM_RANGE; mem= keeps RAM below
    # it), switched to fsdax through sysfs (the pfn seed, as ndctl does) and
    # mounted with ext4 -o dax.
    Scenario(
        "fsdax-of", "fsdax",
        requires=("CONFIG_OF_PMEM", "CONFIG_ZONE_DEVICE", "CONFIG_FS_DAX", "CONFIG_EXT4_FS"),
        cmdline=(ARM64_RAM_LIMIT,),
    ),
    # arm64: device-dax on the pmem of a pmem-region node of its own (the dax
    # seed, as "ndctl create-namespace -m devdax" does), aligned to PMD_SIZE.
    Scenario(
        "devdax-of", "devdax-pmd",
        requires=("CONFIG_OF_PMEM", "CONFIG_ZONE_DEVICE", "CONFIG_DEV_DAX", "CONFIG_DEV_DAX_PMEM"),
        cmdline=(ARM64_RAM_LIMIT,),
    ),
    Scenario(
        "devdax", "devdax-pmd",
        requires=_PMEM + ("CONFIG_DEV_DAX", "CONFIG_DEV_DAX_PMEM"),
        cmdline=("memmap=256M!1536M",),
    ),
    Scenario(
        "pcibar", "pfnmap-io",
        requires=("CONFIG_PCI",),
        qemu_args=_IVSHMEM16,
    ),
    Scenario(
        "vfio-huge", "pfnmap-pud",
        # ARCH_SUPPORTS_PUD_PFNMAP came with huge PFNMAP support in 6.12,
        # together with vfio-pci's huge_fault.
        requires=("CONFIG_VFIO_PCI", "CONFIG_INTEL_IOMMU", "CONFIG_ARCH_SUPPORTS_PUD_PFNMAP"),
        early_qemu_args=("-device", "intel-iommu,intremap=off"),
        qemu_args=_IVSHMEM1G,
        cmdline=("intel_iommu=on", "iommu=pt", "vfio_iommu_type1.allow_unsafe_interrupts=1"),
        note="huge PFNMAP and vfio-pci huge_fault arrived in 6.12",
        # arm64 selects ARCH_SUPPORTS_PMD_PFNMAP but not PUD (3e509c9b03f9,
        # "mm/arm64: support large pfn mappings"): vfio_pci_vmf_insert_pfn()
        # inserts at PMD_ORDER only, special PMD blocks. The IOMMU is virt's
        # SMMUv3 (vfio type1 needs one: Debian has no VFIO_NOIOMMU), default
        # domains identity as with iommu=pt.
        arches=(("arm64", Scenario(
            "vfio-huge", "pfnmap-pmd",
            requires=("CONFIG_VFIO_PCI", "CONFIG_ARM_SMMU_V3", "CONFIG_ARCH_SUPPORTS_PMD_PFNMAP"),
            machine_props=("iommu=smmuv3",),
            qemu_args=_IVSHMEM1G,
            cmdline=("iommu.passthrough=1",),
            note="huge PFNMAP and vfio-pci huge_fault arrived in 6.12",
        )),),
    ),
    Scenario("p2pdma", "p2pdma", requires=_P2PDMA, qemu_args=_NVME_CMB),
    Scenario(
        "drm-ttm", "pfnmap-ttm",
        requires=("CONFIG_DRM_TTM",),
        requires_any=("CONFIG_DRM_QXL", "CONFIG_DRM_BOCHS"),
        qemu_args=_QXL_BOCHS,
        # qemu-system-aarch64 has bochs-display but no qxl.
        arches=(("arm64", Scenario("drm-ttm", "pfnmap-ttm", requires=("CONFIG_DRM_TTM", "CONFIG_DRM_BOCHS"),
                                   qemu_args=("-device", "bochs-display"))),),
    ),
    Scenario(
        "device-private", "device-private",
        requires=("CONFIG_DEVICE_PRIVATE",),
        note="test_hmm needs DEVICE_PRIVATE memory",
    ),
    Scenario(
        # test_hmm's devices 2 and 3 are DEVICE_COHERENT when it is given
        # "special purpose memory" (spm_addr_dev0/1): real memory that is not
        # System RAM. Only device 2 is used.
        "device-coherent", "device-coherent",
        requires=("CONFIG_DEVICE_PRIVATE",),
        cmdline=tuple(f"memmap=256M${base >> 20}M" for base in COHERENT_BASES),
        test_hmm_args=tuple(f"spm_addr_dev{i}={base:#x}" for i, base in enumerate(COHERENT_BASES)),
        note="test_hmm (and with it its coherent devices) needs DEVICE_PRIVATE",
        # arm64 has no memmap=: the memory is guest RAM above mem= (like the
        # DT pmem), after the pmem nodes, in a guest of 3 GiB.
        arches=(("arm64", Scenario(
            "device-coherent", "device-coherent",
            requires=("CONFIG_DEVICE_PRIVATE",),
            cmdline=(ARM64_RAM_LIMIT,),
            guest_mib=3072,
            test_hmm_args=tuple(f"spm_addr_dev{i}={base:#x}" for i, base in enumerate(ARM64_COHERENT_BASES)),
            note="test_hmm (and with it its coherent devices) needs DEVICE_PRIVATE",
        )),),
    ),
) + ZOO

_BY_NAME: Dict[str, Scenario] = {s.name: s for s in SCENARIOS}


@dataclass(frozen=True)
class Plan:
    """What one boot will set up."""

    #: The scenarios to run, in :data:`SCENARIOS` order.
    scenarios: Tuple[Scenario, ...]
    #: Scenarios that will not run, with the reason.
    skipped: Mapping[str, str]
    #: test_hmm.ko for ``device-private``, if it runs.
    test_hmm: Optional[Path]

    def qemu_args(self) -> Tuple[List[str], List[str]]:
        """Return (early args, device args) for QEMU; a device that two
        scenarios share (the same option and value) is given once."""
        early: List[str] = []
        devices: List[str] = []
        for s in self.scenarios:
            _add_pairs(early, s.early_qemu_args)
            _add_pairs(devices, s.qemu_args)
        return early, devices

    def test_hmm_args(self) -> List[str]:
        """Module parameters for test_hmm.ko: coherent devices when ``device-coherent`` runs
        (test_hmm makes devices 2 and 3 coherent only when both addresses are set)."""
        return [arg for s in self.scenarios for arg in s.test_hmm_args]

    def machine_props(self) -> List[str]:
        """Return the ``-machine`` properties the scenarios need, each once."""
        props: List[str] = []
        for s in self.scenarios:
            props += [p for p in s.machine_props if p not in props]
        return props

    def of_pmem(self) -> Dict[str, Tuple[int, int]]:
        """(start, size) of the pmem-region node of each DT pmem scenario that runs."""
        return {s.name: OF_PMEM_RANGES[s.name] for s in self.scenarios if s.name in OF_PMEM_RANGES}

    def memory_mib(self, default: int) -> int:
        """The guest memory (MiB) of the boot: *default*, or more if a scenario needs it."""
        return max([default, *(max(s.memory_mib, s.guest_mib) for s in self.scenarios)])

    def cmdline(self) -> List[str]:
        """Return the kernel command line words the scenarios need."""
        words: List[str] = []
        for s in self.scenarios:
            words += [w for w in s.cmdline if w not in words]
        return words


def _add_pairs(args: List[str], more: Sequence[str]) -> None:
    """Append the option/value pairs of *more* that *args* does not hold yet."""
    have = set(zip(args[::2], args[1::2]))
    for pair in zip(more[::2], more[1::2]):
        if pair not in have:
            args += pair
            have.add(pair)


def kernel_version(kernel: Any) -> Optional[Tuple[int, int]]:
    """(major, minor) of *kernel*'s release (``.kver``), or None if it has none."""
    m = re.match(r"(\d+)\.(\d+)", str(getattr(kernel, "kver", "")))
    return (int(m.group(1)), int(m.group(2))) if m else None


def kernel_config(kernel: Any) -> Dict[str, str]:
    """
    Return a kernel's configuration as ``{"CONFIG_X": "y"}``.

    Accepts a ``Kernel`` whose ``.config`` is such a dict (with or without
    the ``CONFIG_`` prefix) or a path to a config file.
    """
    cfg = getattr(kernel, "config", None)
    if isinstance(cfg, Mapping):
        return {k if k.startswith("CONFIG_") else "CONFIG_" + k: str(v) for k, v in cfg.items()}
    path = Path(cfg) if cfg is not None else Path(kernel.dir) / "config"
    out: Dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value.strip('"')
    return out


def _missing_config(s: Scenario, config: Mapping[str, str],
                    version: Optional[Tuple[int, int]] = None) -> Optional[str]:
    """Why a kernel with *config* (release *version*) cannot run *s*, or None if it can."""
    enabled = {k for k, v in config.items() if v in ("y", "m")}
    missing = [opt for opt in s.requires if opt not in enabled]
    if missing:
        reason = "kernel lacks " + ", ".join(missing)
    elif s.requires_any and not enabled.intersection(s.requires_any):
        reason = "kernel lacks all of " + ", ".join(s.requires_any)
    elif s.since and version is not None and version < s.since:
        reason = "kernel {}.{} predates {}.{}".format(*version, *s.since)
    else:
        return None
    return f"{reason} ({s.note})" if s.note else reason


def _find_test_hmm(kernel: Any, test_hmm: Optional[os.PathLike]) -> Tuple[Optional[Path], Optional[str]]:
    """
    Resolve the test_hmm.ko to use: the parameter, else ``$DRGN_P2P_TEST_HMM``,
    else one built from the kernel's own source package (cached per kernel).
    Return (path, None) or (None, reason).
    """
    value = test_hmm if test_hmm is not None else os.environ.get(TEST_HMM_ENV)
    if not value:
        from .kmod import build_module

        try:
            value = build_module(kernel, "test_hmm")
        except LabError as e:
            return None, f"cannot build test_hmm: {e}"
    path = Path(value).resolve()
    if not path.is_file():
        return None, f"test_hmm.ko not found: {path}"
    return path, None


#: Scenarios the arm64 lab sets up so far (its root is busybox, bash, the
#: holder, test_hmm and the kernel's modules the scenarios load); the others
#: are skipped there with :data:`ARM64_NOT_YET`.
ARM64_SCENARIOS = ("anon", "thp", "zero-page", "protnone", "swap", "zswap", "numa-hint", "ksm", "uffd-wp", "pcibar", "fsdax-of", "perf-ring", "packet-ring", "io-uring",
                   "tcp-zc", "io-uring-pbuf", "hugetlb", "secretmem", "guard", "guard-shmem", "hwpoison", "vdso",
                   "device-private", "vfio-huge", "p2pdma", "p2pdma-ro", "shmem-thp", "pcibar-wc", "uio",
                   "udmabuf", "drm-vgem", "drm-virtio-gpu", "drm-ttm", "devdax-of", "device-coherent",
                   "hugetlb-1g")
ARM64_NOT_YET = "not set up by the arm64 lab yet"
#: The arm64 scenarios one boot holds together: those that need no boot of their own.
ARM64_MAIN_BOOT = tuple(name for name in ARM64_SCENARIOS if not _BY_NAME[name].memory_mib)

#: (physical start, size) of the pmem-region node of each DT pmem scenario: the
#: top 512 MiB of the guest's 2.5 GiB (QEMU virt's RAM starts at 1 GiB;
#: ``mem=2048M`` ends it below them), a 256 MiB region each.
OF_PMEM_RANGES = {"fsdax-of": (0xC000_0000, 256 << 20), "devdax-of": (0xD000_0000, 256 << 20)}


def plan(kernel: Any, names: Optional[Iterable[str]] = None,
         test_hmm: Optional[os.PathLike] = None) -> Plan:
    """
    Decide which scenarios run on *kernel*.

    :param names: Scenario names; None means all of :data:`SCENARIOS`.
    :param test_hmm: test_hmm.ko built for this kernel (else ``$DRGN_P2P_TEST_HMM``,
        else ``<kernel.dir>/test_hmm.ko``).
    :raises LabError: on an unknown scenario name.
    """
    wanted = set(_BY_NAME) if names is None else set(names)
    unknown = wanted - set(_BY_NAME)
    if unknown:
        raise LabError(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(_BY_NAME)}")
    config = kernel_config(kernel)
    run: List[Scenario] = []
    skipped: Dict[str, str] = {}
    hmm: Optional[Path] = None
    arch = getattr(kernel, "arch", "amd64")
    arm64 = arch == "arm64"
    for s in SCENARIOS:
        if s.name not in wanted:
            continue
        s = s.on(arch)
        reason = _missing_config(s, config, kernel_version(kernel))
        if reason is None and s.memory_mib and names is None:
            reason = f"needs a boot of its own with {s.memory_mib} MiB of memory (lab run --scenario {s.name})"
        if reason is None and s.unavailable:
            reason = s.unavailable
        if reason is None and arm64 and s.name not in ARM64_SCENARIOS:
            reason = ARM64_NOT_YET
        if reason is None and s.name in _TEST_HMM_SCENARIOS:
            if hmm is None:
                hmm, reason = _find_test_hmm(kernel, test_hmm)
        if reason is None:
            run.append(s)
        else:
            skipped[s.name] = reason
    return Plan(tuple(run), skipped, hmm)


def holder_binary(arch: str = "amd64") -> Path:
    """
    Return the path of the static ``holder`` program for Debian *arch*,
    compiling ``guest/holder.c`` with ``gcc -O2 -static`` into
    ``<cache>/bin/<source hash>/`` when no binary for this exact source
    exists yet.
    """
    return guest_binary("holder", arch)


#: The C compiler that builds static guest programs for each Debian architecture
#: (``gcc-aarch64-linux-gnu`` and ``libc6-dev-arm64-cross`` for arm64).
GUEST_CC = {"amd64": ("gcc", "gcc libc6-dev"), "arm64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross")}


def guest_binary(name: str, arch: str = "amd64") -> Path:
    """
    Return the path of the static guest program ``guest/<name>.c`` (``holder``,
    ``benchload``) for Debian *arch*, compiled with ``gcc -O2 -static`` (the
    cross compiler of :data:`GUEST_CC` for another architecture) into
    ``<cache>/bin/<source hash>[-ARCH]/<name>`` when no binary for this exact
    source exists yet (the hash covers the headers ``guest/*.h`` it may include).
    The binary keeps the source's name, so its ``comm`` is *name*.
    """
    src = GUEST_DIR / f"{name}.c"
    digest = hashlib.sha256(src.read_bytes() + b"".join(
        h.read_bytes() for h in sorted(GUEST_DIR.glob("*.h")))).hexdigest()[:16]
    dest = cache_dir() / "bin" / (digest if arch == "amd64" else f"{digest}-{arch}") / name
    if dest.exists():
        return dest
    if arch not in GUEST_CC:
        raise LabError(f"no compiler known for {arch} guests")
    compiler, packages = GUEST_CC[arch]
    gcc = shutil.which(compiler)
    if gcc is None:
        raise LabError(f"{compiler} not found: the lab compiles guest/{name}.c (install {packages})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{name}.tmp{os.getpid()}")
    proc = subprocess.run([gcc, "-O2", "-static", "-Wall", "-o", str(tmp), str(src)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"compiling {name}.c failed: {proc.stderr.strip()[-500:]}")
    os.replace(tmp, dest)
    return dest


def expect_of(name: str, arch: str = "amd64") -> str:
    """Return the ``expect`` value of the scenario called *name* on Debian *arch*."""
    return _BY_NAME[name].on(arch).expect


def names() -> Sequence[str]:
    """Return every scenario name."""
    return [s.name for s in SCENARIOS]
