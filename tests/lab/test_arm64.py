# SPDX-License-Identifier: GPL-2.0-or-later
"""The arm64 lab: Debian's newest arm64 kernels booted under TCG from their own
busybox root, with anonymous memory, an ivshmem BAR (sysfs resource2), DT pmem
a 1 GiB ivshmem BAR through vfio-pci behind virt's SMMUv3, an NVMe CMB's
p2pmem, and every shape the holder makes alone (THP and hugetlb PMDs, zero page,
PROT_NONE, perf/packet/io_uring rings, TCP zerocopy, secretmem, guard markers,
hwpoison, the vDSO), DT pmem as fsdax and as device-dax held, audited over QMP
from the x86-64 host. Five boots: the 7.2 4K kernel with -cpu max's FEAT_LPA2
(52-bit VA, 5 levels), the same kernel with ``lpa2=off`` (it falls back to 48
bits and 4 levels), the ``-arm64-16k`` kernel (52-bit VA with LPA2: 4 levels of
2048-entry tables under a 32-entry root), and trixie's 6.12 4K kernel, which
still has PTE_DEVMAP, with LPA2 and without.

Expectations come from the kernel's config and source, never from the audit:
- levels = ARM64_HW_PGTABLE_LEVELS(va) = (va - 4) / (PAGE_SHIFT - 3) and the
  level shifts (PAGE_SHIFT - 3) * (4 - n) + 3 (pgtable-hwdef.h), with va = 52
  when the CPU has LPA2 and VA_BITS_MIN (48 with 4K, 47 with 16K pages,
  arch/arm64/include/asm/memory.h) when it has not;
- with LPA2, adjust_protection_map() (arch/arm64/mm/mmap.c) strips SH from
  every user protection, so bits 9:8 of a user PTE are 0 (PA[51:50] of a low
  address); without it they are PTE_SHARED, 0b11;
- pci_mmap_resource_range() (drivers/pci/mmap.c) maps the BAR with
  pgprot_device() = AttrIndx MT_DEVICE_nGnRE (4) and io_remap_pfn_range(), so
  every PTE is special (bit 56), user (bit 6), PXN and UXN (bits 53, 54), and
  the VMA is VM_IO|VM_PFNMAP; the PFNs are the BAR's, page after page;
- vfio_pci_core_mmap() (drivers/vfio/pci/vfio_pci_core.c) makes the VMA
  VM_IO|VM_PFNMAP with pgprot_noncached() = AttrIndx MT_DEVICE_nGnRnE (3);
  its huge_fault inserts at PMD_ORDER only where ARCH_SUPPORTS_PMD_PFNMAP is
  set and at PUD_ORDER only where ARCH_SUPPORTS_PUD_PFNMAP is (arm64 has the
  first, not the second: 3e509c9b03f9), through vmf_insert_pfn_pmd() ->
  pmd_mkhuge(pfn_pmd()) + pmd_mkspecial() (mm/huge_memory.c): a block
  descriptor (bits 1:0 = PMD_TYPE_SECT, 0b01) with PTE_SPECIAL (bit 56);
- the nvme driver publishes its CMB (QEMU puts it in BAR 2) as p2pmem,
  whose mmap (p2pmem_alloc_mmap(), drivers/pci/p2pdma.c) vm_insert_page()s
  ZONE_DEVICE pages with the VMA's own vm_page_prot, protection_map's
  PAGE_SHARED: MT_NORMAL, not special;
- the holder's anonymous memory is RAM with struct pages;
- PTE_DEVMAP (bit 57, arch/arm64/include/asm/pgtable-prot.h) exists while
  the config has ARCH_HAS_PTE_DEVMAP (gone with d438d2734170 in v6.17); until
  7851bf649d42 ("fs/dax: Fix ZONE_DEVICE page reference counts", v6.15) and
  "device/dax: properly refcount device dax pages when mapping" of the same
  series, fsdax PTEs are pte_mkdevmap() = PTE_DEVMAP|PTE_SPECIAL and
  device-dax PMDs pmd_mkdevmap() = PTE_DEVMAP alone (insert_pfn_pmd() on a
  PFN_DEV|PFN_MAP pfn_t); since then both are refcounted folios mapped with
  neither bit (vmf_insert_page_mkwrite(), vmf_insert_folio_pmd()).
"""

import json
import subprocess
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import pytest
from lab_prereq import check_setup, missing, tiered

from drgn_p2p.lab.cli import audit_streams
from drgn_p2p.lab.scenarios import ARM64_MAIN_BOOT
from drgn_p2p.report import vma_at

pytestmark = pytest.mark.lab

#: Memory types (arch/arm64/include/asm/memory.h): pgprot_device() selects
#: MT_DEVICE_nGnRE, pgprot_noncached() MT_DEVICE_nGnRnE; protection_map has MT_NORMAL.
MT_NORMAL, MT_DEVICE_nGnRnE, MT_DEVICE_nGnRE = 0, 3, 4
SPECIAL, USER, PXN, UXN, VALID_PAGE = 1 << 56, 1 << 6, 1 << 53, 1 << 54, 3
#: Bits 1:0 of a block (PMD_TYPE_SECT, arch/arm64/include/asm/pgtable-hwdef.h).
TYPE_SECT = 1
#: PTE_DEVMAP (arch/arm64/include/asm/pgtable-prot.h, until v6.17).
DEVMAP = 1 << 57
#: The access flag (pgtable-hwdef.h).
PTE_AF = 1 << 10


#: The program sources each boot is audited through (live: in the guest, from its Python root).
VIAS = ("qemu", "vmcore", "live")

#: (kernel, LPA2 on the CPU) of each boot.
BOOTS = {"4k-lpa2": ("newest", True), "4k-48bit": ("newest", False), "16k-lpa2": ("newest-16k", True),
         "6.12-4k-lpa2": ("6.12", True), "6.12-4k-48bit": ("6.12", False)}
#: The DT pmem scenarios, checked by tests of their own here.
OF_PMEM = ("fsdax-of", "devdax-of")


@pytest.fixture(scope="module", params=tiered(BOOTS, ["4k-lpa2"]))
def arm64_guest(request):
    if shutil.which("qemu-system-aarch64") is None:
        missing("qemu-system-aarch64 is not installed (qemu-system-arm)")
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        missing("aarch64-linux-gnu-gcc is not installed (gcc-aarch64-linux-gnu)")
    from drgn_p2p.lab.kernels import ensure_kernel
    from drgn_p2p.lab.vm import start

    name, lpa2 = BOOTS[request.param]
    kernel = ensure_kernel(name, "arm64")
    t0 = time.monotonic()
    guest = start(kernel, list(ARM64_MAIN_BOOT), la57=lpa2)
    guest.lpa2 = lpa2
    try:
        check_setup(guest)
        assert {"anon", "pcibar", *OF_PMEM} <= {m["kind"] for m in guest.mappings}, guest.skipped
        # Every other scenario of the arm64 lab is held, or the kernel lacks what it needs.
        assert all(reason.startswith("kernel ") for reason in guest.skipped.values()), guest.skipped
        print(f"\nlab: arm64 {kernel.kver} ({request.param}) ready in {time.monotonic() - t0:.1f} s wall "
              f"(ready at {guest.timings['uptime_ready']:.1f} s guest uptime)", file=sys.stderr)
        yield guest
    finally:
        guest.close()


def _page_shift(config: Dict[str, str]) -> int:
    for shift, option in ((12, "CONFIG_ARM64_4K_PAGES"), (14, "CONFIG_ARM64_16K_PAGES"), (16, "CONFIG_ARM64_64K_PAGES")):
        if config.get(option) == "y":
            return shift
    raise AssertionError("no CONFIG_ARM64_*K_PAGES")


def _devmap(config: Dict[str, str]) -> bool:
    """Whether the kernel has PTE_DEVMAP (bit 57): arm64 selects ARCH_HAS_PTE_DEVMAP until v6.17."""
    return config.get("CONFIG_ARCH_HAS_PTE_DEVMAP") == "y"


def _dax_refcounted(kernel) -> bool:
    """Whether DAX maps refcounted folios without devmap (7851bf649d42 and its series, v6.15)."""
    from drgn_p2p.lab.scenarios import kernel_version

    return kernel_version(kernel) >= (6, 15)


@pytest.fixture(scope="module")
def audits(arm64_guest) -> Dict[str, Dict]:
    """The audit documents through QMP, through an ELF vmcore and live (/proc/kcore in the
    guest's Python root) of the same guest."""
    docs = {}
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-test-") as tmp:
        for via in VIAS:
            t0 = time.monotonic()
            code, out, err = audit_streams(arm64_guest, via, ["--json", "--runs", "-v", "--fail-on", "warning"],
                                           Path(tmp))
            print(f"\nlab: arm64 audit via {via} took {time.monotonic() - t0:.1f} s", file=sys.stderr)
            assert code == 0, f"audit via {via} exited {code}:\n{err[-3000:]}"
            docs[via] = json.loads(out)
    return docs


@pytest.fixture(scope="module")
def audited(audits) -> Dict:
    return audits["qemu"]


def _vma(doc: Dict, mapping: Dict) -> Dict:
    addr = int(mapping["addr"])
    vma = vma_at(doc, int(mapping["pid"]), addr)
    if vma is not None:
        return vma
    raise AssertionError(f"no VMA of pid {mapping['pid']} holds {addr:#x}")


def _held(guest, kind: str) -> List[Dict]:
    """The mappings of *kind*, or a skip when the kernel lacks what *kind* needs
    (the fixture has checked that every reason names a config option or release)."""
    held = [m for m in guest.mappings if m["kind"] == kind]
    if not held:
        pytest.skip(f"{kind} not held on {guest.kernel.kver}: {guest.skipped.get(kind)}")
    return held


def _mapping(guest, kind: str) -> Dict:
    (m,) = [m for m in guest.mappings if m["kind"] == kind]
    return m


def test_layout_is_the_running_kernels(arm64_guest, audited):
    config = arm64_guest.kernel.config
    assert config.get("CONFIG_ARM64_VA_BITS") == "52" and config.get("CONFIG_ARM64_LPA2") == "y"
    page_shift = _page_shift(config)
    lpa2 = arm64_guest.lpa2
    va = 52 if lpa2 else {12: 48, 14: 47}[page_shift]  # VA_BITS_MIN
    per = page_shift - 3
    levels = (va - 4) // per
    if lpa2:
        assert levels == int(config["CONFIG_PGTABLE_LEVELS"])
    shifts = [per * (levels - 1 - d) + page_shift for d in range(levels)]
    entries = [1 << (va - shifts[0])] + [1 << per] * (levels - 1)
    layout = audited["layout"]
    assert layout["arch"] == "arm64" and layout["page_shift"] == page_shift and layout["levels"] == levels
    geometry = layout["geometry"]
    assert geometry["va_bits"] == va
    assert [(lvl["shift"], lvl["entries"]) for lvl in geometry["levels"]] == list(zip(shifts, entries))
    # With LPA2, PA[51:50] come from bits 9:8 (__pte_to_phys, 7.2 pgtable.h); without it they are SH.
    assert (geometry["addr_high_mask"], geometry["addr_high_shift"]) == (("0x300", 42) if lpa2 else ("0x0", 0))
    assert layout["arm64"]["lpa2"] is lpa2
    assert layout["devmap_bit"] == (57 if _devmap(config) else None)  # PTE_DEVMAP, pgtable-prot.h
    assert layout["dax_refcounted"] is _dax_refcounted(arm64_guest.kernel)
    # pmd_special() under ARCH_SUPPORTS_PMD_PFNMAP; arm64 never selects ARCH_SUPPORTS_PUD_PFNMAP.
    assert layout["has_pmd_special"] is (config.get("CONFIG_ARCH_SUPPORTS_PMD_PFNMAP") == "y")
    assert layout["has_pud_special"] is False and "CONFIG_ARCH_SUPPORTS_PUD_PFNMAP" not in config


def test_anon_is_ram(arm64_guest, audited):
    m = _mapping(arm64_guest, "anon")
    vma = _vma(audited, m)
    pages = int(m["len"]) >> _page_shift(arm64_guest.kernel.config)
    assert vma["pages"] == {"ram": pages}, vma["pages"]
    assert vma["special"] == 0 and vma["devmap"] == 0
    for run in vma["runs"]:
        raw = int(run["raw"], 16)
        assert (raw >> 2) & 7 == 0, f"anonymous memory not MT_NORMAL: {raw:#x}"  # protection_map: AttrIndx 0
        assert (raw >> 8) & 3 == (0 if arm64_guest.lpa2 else 3), f"SH/PA[51:50] bits: {raw:#x}"


def test_pci_bar_is_special_device_memory(arm64_guest, audited):
    m = _mapping(arm64_guest, "pcibar")
    vma = _vma(audited, m)
    assert {"PFNMAP", "IO"} <= set(vma["flag_names"]), vma["flag_names"]
    assert vma["file"].endswith("/resource2")
    page_shift = _page_shift(arm64_guest.kernel.config)
    pages = int(m["len"]) >> page_shift
    assert vma["pages"] == {"no-memmap": pages} and vma["special"] == pages and vma["leaves"] == {"pte": pages}
    # The BAR's physical start, from the guest's sysfs: PFNs are its pages in order.
    bar_start, _ = _bar(arm64_guest, vma["file"].split("/")[-2], 2)
    runs = vma["runs"]
    assert int(runs[0]["pfn"], 16) == bar_start >> page_shift
    assert sum(r["count"] for r in runs) == pages
    for run in runs:
        raw = int(run["raw"], 16)
        assert raw & 3 == VALID_PAGE and (raw >> 2) & 7 == MT_DEVICE_nGnRE, f"{raw:#x}"
        assert raw & SPECIAL and raw & USER and raw & PXN and raw & UXN, f"{raw:#x}"
        assert (raw >> 8) & 3 == (0 if arm64_guest.lpa2 else 3), f"SH/PA[51:50] bits: {raw:#x}"
        assert run["page"] == "no-memmap" and run["special"]


def _bar(guest, bdf: str, bar: int):
    """(start, end) physical addresses of BAR *bar* of PCI device *bdf*, from the guest's sysfs."""
    code, text = guest.run(f"sed -n {bar + 1}p /sys/bus/pci/devices/{bdf}/resource")
    assert code == 0, text
    start, end, _ = (int(word, 16) for word in text.split())
    return start, end


def test_vfio_huge_is_a_special_pmd_block(arm64_guest, audited):
    """vfio-pci's huge_fault on a 1 GiB BAR mapped 1 GiB-aligned: the largest
    order the kernel's config lets vfio_pci_vmf_insert_pfn() insert, a PMD
    block (of PMD_SIZE = 1 << (2 * PAGE_SHIFT - 3)) on arm64, special and
    uncached; 64 KiB of the BAR where no block fits: special PTEs."""
    config = arm64_guest.kernel.config
    assert config.get("CONFIG_ARCH_SUPPORTS_PMD_PFNMAP") == "y"
    huge = "pfnmap-pud" if config.get("CONFIG_ARCH_SUPPORTS_PUD_PFNMAP") == "y" else "pfnmap-pmd"
    held = {m["expect"]: m for m in arm64_guest.mappings if m["kind"] == "vfio-huge"}
    assert set(held) == {huge, huge + "-pte"}, held
    page_shift = _page_shift(config)
    code, bdf = arm64_guest.run("ls /sys/bus/pci/drivers/vfio-pci | grep :")
    assert code == 0, bdf
    bar_start, _ = _bar(arm64_guest, bdf.strip(), 2)
    for expect, level, type_bits in ((huge, "pmd", TYPE_SECT), (huge + "-pte", "pte", VALID_PAGE)):
        vma = _vma(audited, held[expect])
        assert {"PFNMAP", "IO"} <= set(vma["flag_names"]) and vma["ops"] == "vfio_pci_mmap_ops", vma["flag_names"]
        assert set(vma["leaves"]) == {level} and vma["special"] == vma["leaves"][level], vma["leaves"]
        for run in vma["runs"]:
            raw = int(run["raw"], 16)
            assert raw & 3 == type_bits and (raw >> 2) & 7 == MT_DEVICE_nGnRnE, f"{expect}: {raw:#x}"
            assert raw & SPECIAL and raw & USER and raw & PXN and raw & UXN, f"{expect}: {raw:#x}"
            assert run["page"] == "no-memmap" and run["special"]
        # Both mappings start at the BAR's first page (VFIO_PCI_BAR2_REGION_INDEX's offset).
        assert int(vma["runs"][0]["pfn"], 16) == bar_start >> page_shift, (expect, vma["runs"][0])
    pmd = _vma(audited, held[huge])["runs"][0]
    pmd_size = 1 << (2 * page_shift - 3)
    assert int(pmd["end"], 16) - int(pmd["start"], 16) == pmd_size, pmd


def test_p2pdma_pages_of_the_nvme_cmb(arm64_guest, audited):
    """p2pmem of the NVMe CMB (BAR 2 of QEMU's nvme): ZONE_DEVICE P2PDMA pages
    owned by the controller, each of them in the BAR, under VM_MIXEDMAP,
    plain MT_NORMAL PTEs (vm_insert_page() with protection_map's prot)."""
    page_shift = _page_shift(arm64_guest.kernel.config)
    for kind in ("p2pdma", "p2pdma-ro"):
        (m,) = _held(arm64_guest, kind)
        vma = _vma(audited, m)
        pages = int(m["len"]) >> page_shift
        assert vma["pages"] == {"p2pdma": pages} and vma["leaves"] == {"pte": pages}, vma["pages"]
        assert "MIXEDMAP" in vma["flag_names"] and "PFNMAP" not in vma["flag_names"], vma["flag_names"]
        bdf = vma["file"].split("/")[-3]
        start, end = _bar(arm64_guest, bdf, 2)
        for run in vma["runs"]:
            raw = int(run["raw"], 16)
            assert raw & 3 == VALID_PAGE and (raw >> 2) & 7 == MT_NORMAL and not raw & SPECIAL, f"{kind}: {raw:#x}"
            first = int(run["pfn"], 16) << page_shift
            assert start <= first and first + (run["count"] << page_shift) - 1 <= end, (kind, run)
            assert run["page"] == "p2pdma" and run["owner"] == bdf, run


def test_p2pdma_reported_as_mixedmap_abuse(arm64_guest, audited):
    """As on x86-64 (test_audit): the merged P2PDMA mmap, struct pages only under VM_MIXEDMAP, is an info finding."""
    for kind in ("p2pdma", "p2pdma-ro"):
        (m,) = _held(arm64_guest, kind)
        vma = _vma(audited, m)
        hits = [f for f in audited["findings"] if f["rule"] == "mixedmap-all-struct-pages"
                and f["vma"]["start"] == vma["start"] and f["pid"] == vma["pid"]]
        assert len(hits) == 1 and hits[0]["severity"] == "info", (kind, hits)


def _check_dax_runs(guest, vma: Dict, scenario: str) -> None:
    """Every leaf of *vma* is MT_NORMAL pmem of *scenario*'s pmem-region node,
    with PTE_DEVMAP (and PTE_SPECIAL on PTEs, pte_mkdevmap()) exactly where the
    kernel still marks DAX leaves devmap (see the module docstring)."""
    from drgn_p2p.lab.scenarios import OF_PMEM_RANGES

    config = guest.kernel.config
    base, size = OF_PMEM_RANGES[scenario]
    page_shift = _page_shift(config)
    devmap = _devmap(config) and not _dax_refcounted(guest.kernel)
    for run in vma["runs"]:
        raw = int(run["raw"], 16)
        assert (raw >> 2) & 7 == 0, f"not MT_NORMAL: {raw:#x}"  # protection_map: AttrIndx 0
        assert bool(raw & DEVMAP) is devmap, f"PTE_DEVMAP {'missing' if devmap else 'set'}: {raw:#x}"
        assert bool(raw & SPECIAL) is (devmap and run["level"] == "pte"), f"PTE_SPECIAL: {raw:#x}"
        assert base >> page_shift <= int(run["pfn"], 16) < (base + size) >> page_shift
    present = sum(vma["leaves"].values())
    assert vma["devmap"] == (present if devmap else 0)


def test_fsdax_from_a_dt_pmem_region(arm64_guest, audited):
    """ext4 -o dax on the fsdax namespace of a pmem-region node, MAP_SYNC."""
    m = _mapping(arm64_guest, "fsdax-of")
    vma = _vma(audited, m)
    pages = int(m["len"]) >> _page_shift(arm64_guest.kernel.config)
    assert vma["pages"] == {"fsdax": pages}, vma["pages"]
    assert vma["leaves"] == {"pte": pages}, vma["leaves"]
    assert "SYNC" in vma["flag_names"]  # MAP_SYNC (holder.c file mode)
    assert not {"PFNMAP", "MIXEDMAP"} & set(vma["flag_names"]), vma["flag_names"]
    _check_dax_runs(arm64_guest, vma, "fsdax-of")
    # The iomem resource of the namespace (nd_namespace_io: namespaceR.0 of region R).
    assert {run["owner"] for run in vma["runs"]} == {f"namespace{_region_id(arm64_guest, 'fsdax-of')}.0"}


def test_devdax_from_a_dt_pmem_region(arm64_guest, audited):
    """device-dax on the dax seed of a pmem-region node, aligned to PMD_SIZE:
    dev_dax_huge_fault() maps the holder's two PMD_SIZE-aligned PMDs as block
    entries (6.12: vmf_insert_pfn_pmd(); 7.2: vmf_insert_folio_pmd()) of a VMA
    that dax_mmap() makes VM_HUGEPAGE, neither PFNMAP nor MIXEDMAP."""
    config = arm64_guest.kernel.config
    m = _mapping(arm64_guest, "devdax-of")
    vma = _vma(audited, m)
    page_shift = _page_shift(config)
    pmd_size = 1 << (2 * page_shift - 3)  # PMD_SHIFT: one table of 8-byte entries below it
    assert int(m["len"]) == 2 * pmd_size and int(m["addr"]) % pmd_size == 0, m
    assert vma["pages"] == {"devdax": int(m["len"]) >> page_shift}, vma["pages"]
    assert vma["leaves"] == {"pmd": 2}, vma["leaves"]
    assert "HUGEPAGE" in vma["flag_names"] and not {"PFNMAP", "MIXEDMAP"} & set(vma["flag_names"])
    for run in vma["runs"]:
        raw = int(run["raw"], 16)
        assert raw & 3 == TYPE_SECT and raw & USER and raw & PXN and raw & UXN, f"{raw:#x}"
        assert int(run["pfn"], 16) % (pmd_size >> page_shift) == 0, run
    _check_dax_runs(arm64_guest, vma, "devdax-of")
    # dax_pmem names the device-dax instance after the namespace: daxR.0 of region R.
    region = _region_id(arm64_guest, "devdax-of")
    assert vma["file"] == f"/dev/dax{region}.0"
    assert {run["owner"] for run in vma["runs"]} == {f"dax{region}.0"}


def _region_id(guest, scenario: str) -> int:
    """The id of the nd region of *scenario*'s pmem-region node, read from the guest's sysfs."""
    from drgn_p2p.lab.scenarios import OF_PMEM_RANGES

    base = OF_PMEM_RANGES[scenario][0]
    code, text = guest.run(f"for r in /sys/bus/nd/devices/region*; do [ $(($(cat $r/resource))) = {base} ] && "
                           "echo ${r##*region}; done; :")
    assert code == 0 and text.split(), text
    return int(text.split()[0])


def test_no_error_or_warning_findings(audited):
    bad = [f for f in audited["findings"] if f["severity"] in ("error", "warning")]
    assert not bad, json.dumps(bad, indent=1)[:3000]
    assert audited["summary"]["unreadable_tables"] == 0


def test_runs_lie_in_their_vma(arm64_guest, audited):
    """Every run of a held mapping lies inside its VMA, runs ascend without
    overlapping, and each spans count leaves of its level's size: a PTE maps
    PAGE_SIZE, a PMD 2^((PAGE_SHIFT - 3) + PAGE_SHIFT), a PUD one more level
    (ARM64_HW_PGTABLE_LEVEL_SHIFT, arch/arm64/include/asm/pgtable-hwdef.h)."""
    page_shift = _page_shift(arm64_guest.kernel.config)
    level_shift = {"pte": page_shift, "pmd": 2 * page_shift - 3, "pud": 3 * page_shift - 6}
    for m in arm64_guest.mappings:
        vma = _vma(audited, m)
        low, high = int(vma["start"], 16), int(vma["end"], 16)
        for run in vma["runs"]:
            start, end = int(run["start"], 16), int(run["end"], 16)
            assert low <= start < end <= high, (m["kind"], run["start"], run["end"], vma["start"], vma["end"])
            assert end - start == run["count"] << level_shift[run["level"]], (m["kind"], run)
            low = end


def test_a_qemu_kdump_file_fails_with_one_line(arm64_guest, tmp_path):
    """QEMU's kdump-compressed dumps record no architecture, and libkdumpfile cannot
    translate an arm64 guest's kernel addresses in them ("No way to translate"): the
    audit refuses such a dump with one error line naming the way out (an ELF dump)
    and exit code 2, with or without the vmlinux, never a traceback."""
    dump = tmp_path / "guest.kdump"
    arm64_guest.dump(dump, "kdump-zlib")
    vmlinux = str(arm64_guest.kernel.vmlinux)
    for extra, says in (([], "--architecture x86_64 or aarch64"), (["-s", vmlinux], "ELF format")):
        proc = subprocess.run([sys.executable, "-m", "drgn_p2p", "audit", "-c", str(dump), *extra],
                              capture_output=True, text=True, timeout=600)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1 and says in errors[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and not [line for line in proc.stderr.splitlines()
                                                        if not line.startswith(("error:", "warning: vmcore"))]


def test_qmp_and_vmcore_agree(arm64_guest, audits):
    """The held mappings' runs are the same read over QMP, from the dump and live
    through /proc/kcore in the guest (held mappings are static while the guest runs),
    but for PTE_AF: page aging (ptep_test_and_clear_young()) may clear it on the
    running guest in between, on a NUMA-hinting PROT_NONE entry too."""
    for m in arm64_guest.mappings:
        runs = {via: [(r["start"], r["count"], int(r["raw"], 16) & ~PTE_AF, r["page"]) for r in _vma(doc, m)["runs"]]
                for via, doc in audits.items()}
        assert runs["qemu"] == runs["vmcore"], m["kind"]
        assert runs["live"] == runs["qemu"], m["kind"]


def test_device_private_pfns_sit_at_the_top_of_the_linear_map(arm64_guest, audited):
    """
    The 2025-07 thread doubts device-private memory works anywhere but on
    x86-64. On arm64 test_hmm loads and migrates, and its pages sit where
    request_free_mem_region() puts them (lib/test_hmm.c, 256 MiB chunks, one
    per device at load, more as migrations need them): each the highest free
    iomem range below
    DIRECT_MAP_PHYSMEM_END (kernel/resource.c gfr_start()), which arm64
    defines as __pa(PAGE_END - 1), i.e. PAGE_END - 1 - PAGE_OFFSET +
    memstart_addr with PAGE_OFFSET = -2^VA_BITS and, without KASAN,
    PAGE_END = -2^(VA_BITS_MIN - 1) (arch/arm64/include/asm/memory.h).
    Every device-private entry names a page of test_hmm's DEVICE_PRIVATE
    pgmap (a run's leaves share page kind, pgmap and owner; test_hmm hands
    out its pages from the top down, so a run's PFNs need not ascend) and
    each run's first PFN lies in those chunks.
    """
    held = _held(arm64_guest, "device-private")
    config = arm64_guest.kernel.config
    assert config.get("CONFIG_KASAN") != "y"  # KASAN moves PAGE_END below its shadow
    page_shift = _page_shift(config)
    va_bits = int(config["CONFIG_ARM64_VA_BITS"])
    va_bits_min = (47 if page_shift == 14 else 48) if va_bits > 48 else va_bits
    from drgn_p2p.target import open_program

    prog = open_program(qemu=arm64_guest.qmp_path, symbols=[str(arm64_guest.kernel.vmlinux)])
    memstart = prog["memstart_addr"].value_() & (2**64 - 1)
    mask = 2**64 - 1
    page_offset, page_end = -(1 << va_bits) & mask, -(1 << (va_bits_min - 1)) & mask
    physmem_end = (page_end - 1 - page_offset + memstart) & mask
    code, text = arm64_guest.run("grep ' : hmm_dmirror$' /proc/iomem")
    assert code == 0, text
    chunks = sorted(tuple(int(x, 16) for x in line.split(" : ")[0].split("-")) for line in text.splitlines())
    assert len(chunks) >= 2 and all(end - start + 1 == 256 << 20 for start, end in chunks), chunks
    assert chunks[-1][1] == physmem_end, f"top chunk ends at {chunks[-1][1]:#x}, not {physmem_end:#x}"
    assert all(below[1] + 1 == above[0] for below, above in zip(chunks, chunks[1:])), chunks
    runs = [r for m in held for r in _vma(audited, m)["runs"] if r["entry"] == "device-private"]
    assert runs
    for run in runs:
        first = int(run["pfn"], 16) << page_shift
        assert any(start <= first <= end for start, end in chunks), f"{first:#x} outside {chunks}"
        assert run["page"] == "device-private" and run["owner"] == "hmm_dmirror", run
    print(f"\nlab: arm64 {arm64_guest.kernel.kver} (lpa2={arm64_guest.lpa2}): test_hmm's device-private "
          f"chunks {', '.join(f'{s:#x}-{e:#x}' for s, e in chunks)}; DIRECT_MAP_PHYSMEM_END {physmem_end:#x}",
          file=sys.stderr)


#: The scenarios checked as on x86-64 (tests/lab/test_audit.py): their expectations name
#: the kernel code that makes each shape, none depends on x86-64's bits (vfio-huge's is
#: the arm64 one of its Scenario).
AS_ON_X86_64 = [s for s in ARM64_MAIN_BOOT if s not in ("anon", "pcibar", *OF_PMEM)]


@pytest.mark.parametrize("scenario", AS_ON_X86_64)
def test_holder_shapes_are_classified_as_on_x86_64(arm64_guest, audited, scenario):
    from test_audit import _check_expectation

    for m in _held(arm64_guest, scenario):
        problems = _check_expectation(m["expect"], _vma(audited, m), audited)
        assert not problems, f"{scenario} on {arm64_guest.kernel.kver}: {problems}"
