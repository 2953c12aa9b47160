# SPDX-License-Identifier: GPL-2.0-or-later
"""
The audit on real kernels: every mapping the lab holds (its own scenarios and
the zoo of mappings kernels and drivers make) is classified as the kind it was
created as, with the bits its kernel gives it; a clean guest passes
``--fail-on warning``; and QMP, a vmcore and live /proc/kcore agree. Each
kernel's results go to the zoo document (``scripts/zoo-matrix`` renders it).
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from lab_prereq import check_setup

from conftest import lab_document_path
from drgn_p2p.lab import proof, zoo
from drgn_p2p.lab.cli import run_audit
from drgn_p2p.lab.scenarios import SCENARIOS, ZOO
from drgn_p2p.report import vma_at

pytestmark = pytest.mark.lab

#: Lab kernels the audit is verified on.
KERNELS = ("6.1", "6.12", "newest")
#: The scenarios the main boot holds; the ones that need a boot of their own (memory) are
#: checked in tests/lab/test_zoo_alone.py.
MAIN_BOOT = [s.name for s in SCENARIOS if not s.memory_mib]
SOURCES = ("qemu", "vmcore", "live")


def _json_from(output: str) -> Dict:
    start = output.find("{\n")
    assert start >= 0, f"no JSON in output:\n{output[-2000:]}"
    return json.loads(output[start:])


class LabAudit:
    """One guest and the ``audit --json --runs --fail-on warning`` document (and exit code) from each source."""

    def __init__(self, guest, docs: Dict[str, Dict], codes: Optional[Dict[str, int]] = None) -> None:
        self.guest = guest
        self.docs = docs
        self.codes = codes or {}

    def mappings(self, kind: str) -> List[Dict]:
        found = [m for m in self.guest.mappings if m["kind"] == kind]
        if not found:
            reason = self.guest.skipped.get(kind, "not in the manifest")
            pytest.skip(f"{kind} not held on {self.guest.kernel.kver}: {reason}")
        return found

    def vma(self, m: Dict, source: str = "qemu") -> Dict:
        addr = int(m["addr"])
        vma = vma_at(self.docs[source], int(m["pid"]), addr)
        if vma is None:
            raise AssertionError(f"{source}: no VMA of pid {m['pid']} holds {addr:#x} ({m['kind']})")
        return vma


def audit_sources(guest) -> LabAudit:
    """*guest* audited through every program source with ``--json --runs -v --fail-on warning``."""
    docs, codes = {}, {}
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-test-") as tmp:
        for source in SOURCES:
            code, output = run_audit(guest, source, ["--json", "--runs", "-v", "--fail-on", "warning"], Path(tmp))
            assert code in (0, 1), f"audit via {source} failed ({code}):\n{output[-3000:]}"
            docs[source], codes[source] = _json_from(output), code
    return LabAudit(guest, docs, codes)


@pytest.fixture(scope="module", params=KERNELS)
def lab(request, lab_guest) -> LabAudit:
    audited = audit_sources(lab_guest(request.param))
    guest = audited.guest
    path = _record_zoo(request.config, request.param, audited)
    print(f"\nzoo: {guest.kernel.kver} → {path}", file=sys.stderr)
    return audited


#: Where the zoo document goes (default: the pytest cache); ``scripts/zoo-matrix`` renders it.
ZOO_ENV = "DRGN_P2P_ZOO_OUT"


def _zoo_entry(audited: LabAudit) -> Dict:
    """The kernel's entry of the zoo document: every zoo shape held or why not, and the clean audits."""
    guest, doc = audited.guest, audited.docs["qemu"]
    shapes = {s.name for s in ZOO}
    records = [
        zoo.mapping_record(m, audited.vma(m), doc, _check_expectation(m["expect"], audited.vma(m), doc))
        for m in guest.mappings if m["kind"] in shapes
    ]
    held = {m["kind"] for m in guest.mappings}
    scenarios = {s.name: "held" if s.name in held else guest.skipped.get(s.name, "not set up") for s in ZOO}
    clean = {source: zoo.clean_record(audited.codes[source], audited.docs[source]) for source in audited.docs}
    return zoo.kernel_record(guest.kernel.kver, scenarios, records, clean)


def _record_zoo(config: pytest.Config, name: str, audited: LabAudit) -> Path:
    """Merge this kernel's entry into the zoo document."""
    path = lab_document_path(config, ZOO_ENV, "zoo.json")
    try:
        existing: Optional[Dict] = proof.load(path, zoo.SCHEMA)
    except (OSError, ValueError):
        existing = None
    proof.write(path, zoo.merge(existing, {name: _zoo_entry(audited)}))
    return path


def _features(doc: Dict) -> Dict:
    return doc["layout"]


def _check_expectation(expect: str, vma: Dict, doc: Dict) -> List[str]:
    """Mismatches between what *vma* maps and what the lab created (empty: fine)."""
    pages, entries, leaves = vma["pages"], vma["entries"], vma["leaves"]
    flags = set(vma["flag_names"])
    present = sum(leaves.values())
    lay = _features(doc)
    problems = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    if expect == "anon":
        need(pages.get("ram", 0) > 0 and set(pages) <= {"ram", "zero-page"}, f"anonymous RAM, got {pages}")
        need(vma["special"] == 0, "no special leaves")
    elif expect == "thp-pmd":
        need(leaves.get("pmd", 0) > 0 and set(pages) == {"ram"}, f"a RAM PMD leaf, got {pages} {leaves}")
    elif expect == "zero-page":
        need(pages.get("zero-page", 0) > 0, f"zero-page PTEs, got {pages}")
        need(vma["special"] >= pages.get("zero-page", 0), "the zero page mapped special")
    elif expect == "protnone":
        need(entries.get("protnone", 0) > 0, f"PROT_NONE entries, got {entries}")
    elif expect == "swap":
        need(entries.get("swap", 0) > 0, f"swap entries, got {entries}")
    elif expect in ("fsdax", "fsdax-pmd"):
        need(pages.get("fsdax", 0) > 0 and set(pages) == {"fsdax"}, f"fsdax pages only, got {pages}")
        if expect == "fsdax-pmd":
            # dax_iomap_pmd_fault() on 2 MiB-aligned blocks at a 2 MiB-aligned address.
            need(leaves == {"pmd": 2}, f"two PMD leaves, got {leaves}")
        need(not flags & {"PFNMAP", "MIXEDMAP"}, f"neither PFNMAP nor MIXEDMAP, got {sorted(flags)}")
        if lay["devmap_bit"] is not None and not lay["dax_refcounted"]:
            need(vma["devmap"] == present, f"every DAX leaf devmap ({vma['devmap']}/{present})")
            need(vma["special"] == leaves.get("pte", 0), "every DAX PTE special (pte_mkdevmap)")
        else:
            need(vma["special"] == 0 and vma["devmap"] == 0, "plain refcounted DAX leaves")
    elif expect == "devdax-pmd":
        need(pages.get("devdax", 0) > 0 and set(pages) == {"devdax"}, f"devdax pages only, got {pages}")
        need(leaves.get("pmd", 0) > 0, f"PMD leaves, got {leaves}")
    elif expect in ("pfnmap-io", "pfnmap-pud", "pfnmap-pud-pte", "pfnmap-pmd", "pfnmap-pmd-pte"):
        need({"PFNMAP", "IO"} <= flags, f"VM_PFNMAP|VM_IO, got {sorted(flags)}")
        need(set(pages) == {"no-memmap"}, f"BAR memory without struct pages, got {pages}")
        need(vma["special"] == present > 0, f"every leaf special ({vma['special']}/{present})")
        if expect == "pfnmap-pud":
            need(leaves.get("pud", 0) > 0, f"a PUD leaf, got {leaves}")
        if expect == "pfnmap-pmd":
            # vfio-pci's huge_fault on a kernel with ARCH_SUPPORTS_PMD_PFNMAP but not
            # PUD (arm64): vmf_insert_pfn_pmd(), never a PUD leaf.
            need(leaves.get("pmd", 0) > 0 and "pud" not in leaves, f"PMD leaves and no PUD leaf, got {leaves}")
        if expect in ("pfnmap-pud-pte", "pfnmap-pmd-pte"):
            # vfio-pci's huge_fault at order 0 (vmf_insert_pfn) where no huge leaf fits.
            need(set(leaves) == {"pte"}, f"PTE leaves only, got {leaves}")
    elif expect == "pfnmap-ttm":
        need("PFNMAP" in flags, f"VM_PFNMAP, got {sorted(flags)}")
        need(vma["special"] == present > 0, f"every leaf special ({vma['special']}/{present})")
    elif expect == "p2pdma":
        need(pages.get("p2pdma", 0) > 0 and set(pages) == {"p2pdma"}, f"P2PDMA pages only, got {pages}")
        need({"MIXEDMAP", "SHARED"} <= flags and "PFNMAP" not in flags, f"VM_SHARED|VM_MIXEDMAP, got {sorted(flags)}")
        need(vma["special"] == 0 and vma["devmap"] == 0, "plain refcounted P2PDMA PTEs")
    elif expect in _ZOO_EXPECTATIONS:
        problems += _ZOO_EXPECTATIONS[expect](vma, doc)
    elif expect.startswith("device-private"):
        need(entries.get("device-private", 0) > 0, f"device-private entries, got {entries}")
        level = expect.rpartition("-")[2]
        if level in ("pte", "pmd"):
            levels = {r["level"] for r in vma["runs"] if r["entry"] == "device-private"}
            need(levels == {level}, f"device-private entries at {level} level, got {levels}")
        pages_of_entries = {r["page"] for r in vma["runs"] if r["entry"] == "device-private"}
        need(pages_of_entries == {"device-private"}, f"entries resolve to device-private pages, got {pages_of_entries}")
    elif expect.startswith("device-coherent"):
        # migrate_vma installs coherent pages as plain refcounted anonymous
        # leaves, in private anonymous or private file VMAs (COWed pages);
        # make_device_exclusive() then takes them like RAM.
        what = expect.rpartition("-")[2]
        need("SHARED" not in flags and "MAYSHARE" not in flags, f"a private VMA, got {sorted(flags)}")
        need((vma.get("file") is not None) == (what == "file"), f"file-backed only for -file, got {vma.get('file')}")
        if what == "exclusive":
            need(entries.get("device-exclusive", 0) > 0, f"device-exclusive entries, got {entries}")
            targets = {r["page"] for r in vma["runs"] if r["entry"] == "device-exclusive"}
            need(targets == {"device-coherent"}, f"entries to device-coherent pages, got {targets}")
        else:
            need(pages.get("device-coherent", 0) > 0 and set(pages) == {"device-coherent"},
                 f"device-coherent pages only, got {pages}")
            need(vma["special"] == 0 and vma["devmap"] == 0, "plain leaves")
    else:
        problems.append(f"no expectation written for {expect!r}")
    return problems


def _release(doc: Dict) -> Tuple[int, int]:
    """(major, minor) of the audited kernel."""
    major, minor = doc["kernel"]["release"].split(".")[:2]
    return int(major), int(re.match(r"\d+", minor).group())


def _present_raws(vma: Dict) -> List[int]:
    """The first raw entry of every run of present leaves."""
    return [int(r["raw"], 16) for r in vma["runs"] if r["entry"] == "present"]


class _Need:
    """Collects what a VMA lacks."""

    def __init__(self) -> None:
        self.problems: List[str] = []

    def __call__(self, cond: bool, what: str) -> None:
        if not cond:
            self.problems.append(what)


def _ram_leaves(vma: Dict, need: _Need, special: bool) -> None:
    """Present leaves, all RAM with a struct page, special (or none special) as *special* says."""
    present = sum(vma["leaves"].values())
    need(present > 0 and set(vma["pages"]) == {"ram"}, f"present RAM leaves only, got {vma['pages']}")
    want = present if special else 0
    need(vma["special"] == want and vma["devmap"] == 0, f"{want} of {present} leaves special, none devmap, "
         f"got {vma['special']} special, {vma['devmap']} devmap")


def _zoo_p2pdma_ro(vma: Dict, doc: Dict) -> List[str]:
    """p2pmem_alloc_mmap() (drivers/pci/p2pdma.c) vm_insert_page()s P2PDMA pages; it checks
    VM_MAYSHARE only, and do_mmap() drops VM_SHARED (and VM_MAYWRITE) for a read-only file."""
    need, flags = _Need(), set(vma["flag_names"])
    need(set(vma["pages"]) == {"p2pdma"}, f"P2PDMA pages only, got {vma['pages']}")
    need({"MIXEDMAP", "MAYSHARE"} <= flags and not flags & {"SHARED", "WRITE", "PFNMAP"},
         f"VM_MIXEDMAP|VM_MAYSHARE without VM_SHARED, got {sorted(flags)}")
    need(vma["special"] == 0 and vma["devmap"] == 0, "plain refcounted P2PDMA PTEs")
    return need.problems


def _zoo_mixedmap_ram(vma: Dict, doc: Dict) -> List[str]:
    """vm_insert_page(s)() (mm/memory.c insert_page) sets VM_MIXEDMAP and maps the
    struct page with mk_pte(): AF_PACKET's packet_mmap(), io_uring's ring mmaps, TCP zerocopy
    receive (net/ipv4/tcp.c: tcp_mmap() sets VM_MIXEDMAP, tcp_zerocopy_vm_insert_batch())."""
    need, flags = _Need(), set(vma["flag_names"])
    need("MIXEDMAP" in flags and "PFNMAP" not in flags, f"VM_MIXEDMAP, got {sorted(flags)}")
    _ram_leaves(vma, need, special=False)
    return need.problems


def _zoo_perf_ring(vma: Dict, doc: Dict) -> List[str]:
    """perf_mmap() (kernel/events/core.c) sets VM_DONTCOPY|VM_DONTEXPAND|VM_DONTDUMP. 6.1 and 6.12
    fault the ring's pages in as normal pages (perf_mmap_fault); 7.2 maps them at mmap time
    with remap_pfn_range() (map_range(): VM_PFNMAP|VM_IO, special PTEs); changed in
    between (6.15 [inferred])."""
    need, flags = _Need(), set(vma["flag_names"])
    need({"DONTCOPY", "DONTEXPAND", "DONTDUMP"} <= flags, f"VM_DONTCOPY|VM_DONTEXPAND|VM_DONTDUMP, got {sorted(flags)}")
    pfnmap = _release(doc) >= (6, 15)
    need(({"PFNMAP", "IO"} <= flags) == pfnmap and "MIXEDMAP" not in flags,
         f"VM_PFNMAP|VM_IO {'set' if pfnmap else 'clear'}, got {sorted(flags)}")
    _ram_leaves(vma, need, special=pfnmap)
    return need.problems


def _zoo_pfnmap_ram(vma: Dict, doc: Dict) -> List[str]:
    """vmf_insert_pfn() of RAM pages into a VM_PFNMAP VMA the driver set up (no VM_IO):
    udmabuf_vm_fault() (drivers/dma-buf/udmabuf.c, 6.12+), drm_gem_shmem_fault() (vgem)."""
    need, flags = _Need(), set(vma["flag_names"])
    need("PFNMAP" in flags and not flags & {"IO", "MIXEDMAP"}, f"VM_PFNMAP without VM_IO, got {sorted(flags)}")
    _ram_leaves(vma, need, special=True)
    return need.problems


def _zoo_pfnmap_io_ram(vma: Dict, doc: Dict) -> List[str]:
    """remap_pfn_range() (VM_PFNMAP|VM_IO, special PTEs) of pages that have a struct page:
    /dev/mem's mmap (drivers/char/mem.c) of the low-1 MiB BIOS area (reserved pages in section 0's
    memmap), the DMA-BUF system heap's system_heap_mmap() (drivers/dma-buf/heaps/system_heap.c)."""
    need, flags = _Need(), set(vma["flag_names"])
    need({"PFNMAP", "IO"} <= flags, f"VM_PFNMAP|VM_IO, got {sorted(flags)}")
    _ram_leaves(vma, need, special=True)
    return need.problems


#: _PAGE_PWT and _PAGE_PCD: Linux programs PAT entry 1 (PWT alone) as write-combining.
_PWT, _PCD = 1 << 3, 1 << 4


#: arm64's AttrIndx values (arch/arm64/include/asm/memory.h) that pgprot_writecombine() and
#: pgprot_noncached() select (arch/arm64/include/asm/pgtable.h).
_MT_NORMAL_NC, _MT_DEVICE_nGnRnE = 2, 3


def _zoo_pfnmap_io_cached(pwt_pcd: int, attr_indx: int, mode: str):
    """A BAR mapped by io_remap_pfn_range()/remap_pfn_range() with a cache mode of its own, whose
    special PTEs select it through PWT|PCD (*pwt_pcd*) on x86-64, through AttrIndx (bits 4:2,
    *attr_indx*) on arm64: sysfs resourceN_wc (drivers/pci/pci-sysfs.c, pgprot_writecombine():
    PAT entry 1, PWT, write-combining; MT_NORMAL_NC) and uio (drivers/uio/uio.c
    uio_mmap_physical(), pgprot_noncached() of a UIO_MEM_PHYS map: PAT entry 3, PCD, UC-;
    MT_DEVICE_nGnRnE)."""
    def check(vma: Dict, doc: Dict) -> List[str]:
        need, flags = _Need(), set(vma["flag_names"])
        present = sum(vma["leaves"].values())
        need({"PFNMAP", "IO"} <= flags, f"VM_PFNMAP|VM_IO, got {sorted(flags)}")
        need(set(vma["pages"]) == {"no-memmap"}, f"BAR memory without struct pages, got {vma['pages']}")
        need(vma["special"] == present > 0, f"every leaf special ({vma['special']}/{present})")
        if doc["layout"]["arch"] == "arm64":
            need(all((raw >> 2) & 7 == attr_indx for raw in _present_raws(vma)), f"{mode} PTEs")
        else:
            need(all(raw & (_PWT | _PCD) == pwt_pcd for raw in _present_raws(vma)), f"{mode} PTEs")
        return need.problems
    return check


def _zoo_hugetlb_pmd(vma: Dict, doc: Dict) -> List[str]:
    """MAP_HUGETLB with 2 MiB pages: a hugetlb VMA (VM_HUGETLB) mapped by one PMD leaf."""
    need = _Need()
    need("HUGETLB" in vma["flag_names"], f"VM_HUGETLB, got {vma['flag_names']}")
    need(vma["leaves"] == {"pmd": 1}, f"one PMD leaf, got {vma['leaves']}")
    _ram_leaves(vma, need, special=False)
    return need.problems


def _zoo_hugetlb_pud(vma: Dict, doc: Dict) -> List[str]:
    """MAP_HUGETLB|MAP_HUGE_1GB: a hugetlb VMA (VM_HUGETLB) mapped by one PUD leaf (x86-64's
    1 GiB hstate, registered with GBPAGES: arch/x86/mm/hugetlbpage.c)."""
    need = _Need()
    need("HUGETLB" in vma["flag_names"], f"VM_HUGETLB, got {vma['flag_names']}")
    need(vma["leaves"] == {"pud": 1}, f"one PUD leaf, got {vma['leaves']}")
    _ram_leaves(vma, need, special=False)
    return need.problems


def _zoo_thp_pmd_shared(vma: Dict, doc: Dict) -> List[str]:
    """shmem with shmem_enabled=advise and MADV_HUGEPAGE: finish_fault() maps the PMD-sized
    folio with do_set_pmd(), a normal PMD leaf in a VM_SHARED VMA."""
    need = _Need()
    need("SHARED" in vma["flag_names"], f"VM_SHARED, got {vma['flag_names']}")
    need(vma["leaves"] == {"pmd": 1}, f"one PMD leaf, got {vma['leaves']}")
    _ram_leaves(vma, need, special=False)
    return need.problems


#: The PTE bits pte_write() and pte_uffd_wp() test, per architecture: x86-64's _PAGE_RW and
#: _PAGE_UFFD_WP (_PAGE_BIT_SOFTW2, arch/x86/include/asm/pgtable_types.h); arm64's PTE_WRITE
#: (= PTE_DBM, bit 51) and PTE_UFFD_WP (bit 58, arch/arm64/include/asm/pgtable-prot.h, 7.2).
_WRITE_UFFD_WP = {"x86_64": (1 << 1, 1 << 10), "arm64": (1 << 51, 1 << 58)}


def _write_uffd_wp(doc: Dict) -> Tuple[int, int]:
    return _WRITE_UFFD_WP[doc["layout"].get("arch", "x86_64")]


def _zoo_ksm(vma: Dict, doc: Dict) -> List[str]:
    """KSM (mm/ksm.c) write-protects each page (write_protect_page) and maps the stable
    page read-only in its place (replace_page): normal, read-only PTEs in a VM_MERGEABLE VMA."""
    need = _Need()
    need("MERGEABLE" in vma["flag_names"], f"VM_MERGEABLE, got {vma['flag_names']}")
    _ram_leaves(vma, need, special=False)
    write, _ = _write_uffd_wp(doc)
    need(not any(raw & write for raw in _present_raws(vma)), "read-only PTEs")
    return need.problems


def _zoo_secretmem(vma: Dict, doc: Dict) -> List[str]:
    """memfd_secret() (mm/secretmem.c): secretmem_fault() hands its page-cache page to the
    fault path (normal PTEs); mmap sets VM_DONTDUMP, and VM_LOCKED too on 6.1 (secretmem.c:131)
    but not on 6.12 (:209) or 7.2 (:207), which dropped it (6.5 [inferred])."""
    need, flags = _Need(), set(vma["flag_names"])
    locked = _release(doc) < (6, 5)
    need("DONTDUMP" in flags and ("LOCKED" in flags) == locked and not flags & {"PFNMAP", "MIXEDMAP"},
         f"VM_DONTDUMP{', VM_LOCKED' if locked else ' without VM_LOCKED'}, got {sorted(flags)}")
    _ram_leaves(vma, need, special=False)
    return need.problems


def _zoo_uffd_wp(vma: Dict, doc: Dict) -> List[str]:
    """UFFDIO_WRITEPROTECT on shmem (mm/mprotect.c change_pte_range): present PTEs lose RW and
    gain _PAGE_UFFD_WP; none PTEs get a PTE_MARKER_UFFD_WP marker (CONFIG_PTE_MARKER_UFFD_WP)."""
    need = _Need()
    need("UFFD_WP" in vma["flag_names"], f"VM_UFFD_WP, got {vma['flag_names']}")
    need(vma["entries"].get("marker", 0) > 0, f"PTE markers, got {vma['entries']}")
    _ram_leaves(vma, need, special=False)
    write, uffd_wp = _write_uffd_wp(doc)
    need(all(raw & (write | uffd_wp) == uffd_wp for raw in _present_raws(vma)), "read-only UFFD_WP PTEs")
    return need.problems


def _zoo_marker_or_poison(entry: str):
    """RAM where some PTEs were replaced by *entry* entries: guard markers (MADV_GUARD_INSTALL,
    mm/madvise.c; anonymous, or shmem since 6.15) or hwpoison entries (MADV_HWPOISON: memory_failure()
    unmaps the page with TTU_HWPOISON, try_to_unmap_one() installs make_hwpoison_entry())."""
    def check(vma: Dict, doc: Dict) -> List[str]:
        need = _Need()
        need(vma["entries"].get(entry, 0) > 0, f"{entry} entries, got {vma['entries']}")
        _ram_leaves(vma, need, special=False)
        return need.problems
    return check


def _zoo_numa_hint(vma: Dict, doc: Dict) -> List[str]:
    """NUMA balancing (kernel/sched/fair.c task_numa_work() → change_prot_numa(), mm/mprotect.c
    change_pte_range() with MM_CP_PROT_NUMA) rewrites present PTEs of an accessible VMA with
    PAGE_NONE's protection (x86-64: _PAGE_PROTNONE without _PAGE_PRESENT); the VMA keeps
    VM_READ|VM_WRITE and its pages are RAM."""
    need, flags = _Need(), set(vma["flag_names"])
    need({"READ", "WRITE"} <= flags, f"an accessible VMA, got {sorted(flags)}")
    need(vma["entries"].get("protnone", 0) > 0, f"PROT_NONE hinting entries, got {vma['entries']}")
    need(set(vma["pages"]) == {"ram"} and vma["special"] == 0 and vma["devmap"] == 0,
         f"RAM, no special or devmap entry, got {vma['pages']}, {vma['special']} special, {vma['devmap']} devmap")
    return need.problems


def _zoo_vdso_text(vma: Dict, doc: Dict) -> List[str]:
    """[vdso]: _install_special_mapping() of the vDSO image's pages; special_mapping_fault() hands
    the page to the fault path, a normal PTE (arch/x86/entry/vdso/vma.c)."""
    need, flags = _Need(), set(vma["flag_names"])
    need(not flags & {"PFNMAP", "MIXEDMAP", "IO"}, f"no VM_PFNMAP/VM_MIXEDMAP/VM_IO, got {sorted(flags)}")
    _ram_leaves(vma, need, special=False)
    return need.problems


def _zoo_vdso_data(vma: Dict, doc: Dict) -> List[str]:
    """[vvar]: 6.1 and 6.12 install it VM_PFNMAP|VM_IO and vvar_fault() vmf_insert_pfn()s the
    kernel's data page (arch/x86/entry/vdso/vma.c:280 / :260, special PTE); 7.2's generic datastore
    installs it VM_MIXEDMAP|VM_IO and hands vvar_fault()'s struct page to the fault path
    (lib/vdso/datastore.c:130, normal PTE); changed in between (7.0 [inferred]). arm64's own
    (6.12 arch/arm64/kernel/vdso.c:200) installed it VM_PFNMAP without VM_IO."""
    need, flags = _Need(), set(vma["flag_names"])
    mixed = _release(doc) >= (7, 0)
    if mixed:
        want = {"MIXEDMAP", "IO"}
    elif doc["layout"]["arch"] == "arm64":
        want = {"PFNMAP"}
        need("IO" not in flags, f"no VM_IO on arm64's own [vvar], got {sorted(flags)}")
    else:
        want = {"PFNMAP", "IO"}
    need(want <= flags, f"VM_{'|VM_'.join(sorted(want))}, got {sorted(flags)}")
    _ram_leaves(vma, need, special=not mixed)
    return need.problems


def _zoo_fbdev_defio(vma: Dict, doc: Dict) -> List[str]:
    """DRM fbdev emulation with a shadow buffer (qxl: drm_fb_helper.c on 6.1, drm_fbdev_ttm.c on 6.12
    and 7.2) sets FBINFO_VIRTFB; fb_deferred_io_mmap() (drivers/video/fbdev/core/fb_defio.c) adds
    VM_DONTEXPAND|VM_DONTDUMP (VM_IO only without FBINFO_VIRTFB) and fb_deferred_io_fault() hands
    the vmalloc'd page to the fault path: normal PTEs."""
    need, flags = _Need(), set(vma["flag_names"])
    need({"DONTEXPAND", "DONTDUMP", "SHARED"} <= flags and not flags & {"IO", "PFNMAP", "MIXEDMAP"},
         f"VM_SHARED|VM_DONTEXPAND|VM_DONTDUMP without VM_IO, got {sorted(flags)}")
    _ram_leaves(vma, need, special=False)
    return need.problems


#: Expectation of each zoo shape (the ``expect`` column): the VMA flags, page kinds, leaf
#: levels and bits its kernel code path gives it (each function names that path).
_ZOO_EXPECTATIONS = {
    "p2pdma-ro": _zoo_p2pdma_ro,
    "mixedmap-ram": _zoo_mixedmap_ram,
    "perf-ring": _zoo_perf_ring,
    "pfnmap-ram": _zoo_pfnmap_ram,
    "pfnmap-io-ram": _zoo_pfnmap_io_ram,
    "pfnmap-io-wc": _zoo_pfnmap_io_cached(_PWT, _MT_NORMAL_NC, "write-combining (PWT, not PCD; MT_NORMAL_NC)"),
    "pfnmap-io-uc": _zoo_pfnmap_io_cached(_PCD, _MT_DEVICE_nGnRnE, "uncached (PCD, not PWT; MT_DEVICE_nGnRnE)"),
    "hugetlb-pmd": _zoo_hugetlb_pmd,
    "hugetlb-pud": _zoo_hugetlb_pud,
    "thp-pmd-shared": _zoo_thp_pmd_shared,
    "ksm": _zoo_ksm,
    "secretmem": _zoo_secretmem,
    "uffd-wp": _zoo_uffd_wp,
    "guard": _zoo_marker_or_poison("marker"),
    "hwpoison": _zoo_marker_or_poison("hwpoison"),
    "numa-hint": _zoo_numa_hint,
    "vdso-text": _zoo_vdso_text,
    "vdso-data": _zoo_vdso_data,
    "fbdev-defio": _zoo_fbdev_defio,
}


@pytest.mark.parametrize("scenario", MAIN_BOOT)
def test_mapping_classified(lab: LabAudit, scenario: str) -> None:
    """Each held mapping is found with the page kind, leaf level and bits it was created with."""
    for m in lab.mappings(scenario):
        vma = lab.vma(m)
        problems = _check_expectation(m["expect"], vma, lab.docs["qemu"])
        assert not problems, f"{scenario} on {lab.guest.kernel.kver}: {problems}; VMA {vma}"


def test_no_errors_on_clean_guest(lab: LabAudit) -> None:
    """Merged kernel code must produce no error-level finding anywhere in the guest."""
    errors = [f for f in lab.docs["qemu"]["findings"] if f["severity"] == "error"]
    assert not errors, json.dumps(errors, indent=1)


@pytest.mark.parametrize("source", SOURCES)
def test_clean_guest_passes_fail_on_warning(lab: LabAudit, source: str) -> None:
    """
    With every scenario and zoo shape held, ``audit --fail-on warning`` of the whole
    guest exits 0; each info finding is one whose legitimacy is written down
    (:data:`drgn_p2p.lab.zoo.CLEAN_INFO`).
    """
    doc = lab.docs[source]
    loud = [f for f in doc["findings"] if f["severity"] != "info"]
    assert lab.codes[source] == 0 and not loud, json.dumps(loud, indent=1)
    # the processes holding the mappings never exit or change under the audit: nothing of theirs is unreadable
    holders = {int(m["pid"]) for m in lab.guest.mappings}
    assert not [f for f in doc["faults"] if f["pid"] in holders], doc["faults"][:5]
    info = sorted({f["rule"] for f in doc["findings"] if f["severity"] == "info"})
    print(f"\n{lab.guest.kernel.kver} via {source}: info findings {info or 'none'}", file=sys.stderr)
    unexplained = [rule for rule in info if rule not in zoo.CLEAN_INFO]
    assert not unexplained, f"info findings with no explanation in zoo.CLEAN_INFO: {unexplained}"


def test_p2pdma_reported_as_mixedmap_abuse(lab: LabAudit) -> None:
    """The merged P2PDMA mmap (vm_insert_page into VM_MIXEDMAP) is Jason's 'abuse of VM_MIXEDMAP': info."""
    vma = lab.vma(lab.mappings("p2pdma")[0])
    hits = [
        f for f in lab.docs["qemu"]["findings"]
        if f["rule"] == "mixedmap-all-struct-pages" and f["vma"]["start"] == vma["start"] and f["pid"] == vma["pid"]
    ]
    assert len(hits) == 1 and hits[0]["severity"] == "info", hits


#: _PAGE_ACCESSED: the snapshots are taken one after the other, and LRU aging
#: (folio_referenced → ptep_clear_flush_young) clears it in between.
_ACCESSED = 1 << 5


def _runs(vma: Dict) -> List[tuple]:
    return [
        (r["start"], r["end"], r["level"], r["entry"], hex(int(r["raw"], 16) & ~_ACCESSED), r["page"])
        for r in vma.get("runs", [])
    ]


@pytest.mark.parametrize("scenario", MAIN_BOOT)
def test_sources_agree(lab: LabAudit, scenario: str) -> None:
    """QMP, the vmcore and live /proc/kcore see the same VMA flags and raw entries."""
    for m in lab.mappings(scenario):
        ref = lab.vma(m, "qemu")
        for source in ("vmcore", "live"):
            other = lab.vma(m, source)
            assert other["flags"] == ref["flags"], f"{source}: VMA flags differ"
            assert _runs(other) == _runs(ref), f"{source}: raw entries differ from QMP"


def test_four_level_paging() -> None:
    """With LA57 off (-cpu max,-la57) the P4D level is folded; the walk must still find every mapping."""
    from drgn_p2p.lab.kernels import ensure_kernel
    from drgn_p2p.lab.vm import boot

    kernel = ensure_kernel("newest")
    with boot(kernel, scenarios=["anon", "thp", "fsdax", "devdax", "pcibar"], la57=False) as guest:
        check_setup(guest)
        with tempfile.TemporaryDirectory(prefix="drgn-p2p-test-") as tmp:
            code, output = run_audit(guest, "qemu", ["--json", "--runs", "-v"], Path(tmp))
        assert code == 0, output[-3000:]
        doc = _json_from(output)
        assert doc["layout"]["levels"] == 4
        lab4 = LabAudit(guest, {"qemu": doc})
        for scenario in ("anon", "thp", "fsdax", "devdax", "pcibar"):
            for m in lab4.mappings(scenario):
                problems = _check_expectation(m["expect"], lab4.vma(m), doc)
                assert not problems, f"{scenario} with 4-level paging: {problems}"


#: Run in a child process, so that its QMP connection ends with it (QEMU
#: serves one client per socket, and a drgn Program may outlive ``del``).
_WHOLE_STRUCT_CHECK = """
import dataclasses, json, sys
from drgn_p2p import audit
from drgn_p2p.layout import read_layout
from drgn_p2p.report import audit_json
from drgn_p2p.target import open_program

def document(prog):
    result = audit(prog, keep_runs=True)
    doc = audit_json(result, result.layout)
    del doc["summary"]["seconds"]
    return json.dumps(doc, sort_keys=True)

prog = open_program(qemu=sys.argv[1], symbols=[sys.argv[2]])
layout = read_layout(prog)
# every lab kernel has the maple tree (v6.1+)
assert layout.vma_struct is not None and layout.vma_tree is not None
fast = document(prog)
prog.cache["drgn_p2p_layout"] = dataclasses.replace(layout, vma_struct=None, vma_tree=None)
print(json.dumps({"fast": fast, "by_members": document(prog)}))
"""


@pytest.mark.parametrize("kernel", KERNELS)
def test_whole_struct_reads_give_the_same_audit(lab_guest, kernel: str) -> None:
    """The audit reading each VMA as one ``struct vm_area_struct`` and each
    maple node as one read (offsets the layout learns from the kernel's types)
    gives the very JSON document that drgn's ``for_each_vma()`` and member
    reads give, on the same stopped guest."""
    guest = lab_guest(kernel)
    guest.qmp("stop")
    try:
        proc = subprocess.run([sys.executable, "-c", _WHOLE_STRUCT_CHECK, guest.qmp_path, str(guest.kernel.vmlinux)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    finally:
        guest.qmp("cont")
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = json.loads(proc.stdout)
    assert json.loads(docs["fast"])["summary"]["vmas"] > 100
    assert docs["fast"] == docs["by_members"]
