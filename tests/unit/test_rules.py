# SPDX-License-Identifier: GPL-2.0-or-later
"""The rule catalogue: every rule fires on a case it exists for and stays
silent on the legitimate neighbour; the lab's real leaves raise nothing."""

import dataclasses
import os
import re
from pathlib import Path

import pytest

from drgn_p2p import rules as R
from drgn_p2p.arch import x86_64 as X
from drgn_p2p.records import EntryKind, Level, PageKind, Run, Severity

from .layouts import (
    L61,
    L61_DP,
    L72,
    L612,
    L612_DP,
    VM_FLAGS_ANON,
    VM_FLAGS_FSDAX,
    VM_FLAGS_P2P,
    VM_FLAGS_PCIBAR,
    leaf,
    make_vma,
    run,
    vm,
)

VA = 0x7F00_0000_0000  # make_vma()'s start
THREADS = (
    "2019-01-p2p-device-vma-struct-page.txt",
    "2020-11-frame-vector-foll_longterm-pfnmap-special.txt",
    "2021-08-fsdax-devmap-special-rdma.txt",
    "2021-09-p2pdma-pci_mmap_p2pmem-vm_mixedmap.txt",
    "2025-07-hmm-device-private-pfn.txt",
)


def fired(r: Run, layout) -> dict:
    return {f.rule: f for f in R.evaluate_run(r, layout)}


def lab(raw: int, level: Level, layout, flags: int, page: PageKind, file=None, owner=None) -> Run:
    """A one-leaf run of a real raw value, decoded."""
    return run(make_vma(flags, file=file), X.decode_leaf(raw, VA, level, layout), page, owner=owner)


# --- the lab's real mappings: nothing to report --------------------------------

LAB_CLEAN = [
    ("fsdax 6.1", 0x84000000415CBA67, Level.PTE, L61, VM_FLAGS_FSDAX, PageKind.FSDAX),
    ("fsdax 6.12", 0x82000000415CBA67, Level.PTE, L612, VM_FLAGS_FSDAX, PageKind.FSDAX),
    ("fsdax 7.2", 0x80000000415CB867, Level.PTE, L72, VM_FLAGS_FSDAX, PageKind.FSDAX),
    ("devdax 6.12", 0x82000001004008E7, Level.PMD, L612, 0x280000FB, PageKind.DEVDAX),
    ("devdax 7.2", 0x80000000606008E7, Level.PMD, L72, 0x280000FB, PageKind.DEVDAX),
    ("pcibar 7.2", 0x8000000184000277, Level.PTE, L72, VM_FLAGS_PCIBAR, PageKind.NO_MEMMAP),
    ("ivshmem 6.12", 0x80000000FD000277, Level.PTE, L612, VM_FLAGS_PCIBAR, PageKind.NO_MEMMAP),
    ("vfio pud 7.2", 0x80000001400002F7, Level.PUD, L72, 0x800C0444BB, PageKind.NO_MEMMAP),
    ("p2p 7.2", 0x8000000180020067, Level.PTE, L72, VM_FLAGS_P2P, PageKind.P2PDMA),
    ("hmm pmd 7.2", 0xE7FFFFE06403FE02, Level.PMD, L72, VM_FLAGS_ANON, PageKind.DEVICE_PRIVATE),
    ("hmm pte 7.2", 0xE7FFFFE060000002, Level.PTE, L72, 0x48100073, PageKind.DEVICE_PRIVATE),
    ("zero page 6.12", 0x800000002E731225, Level.PTE, L612, VM_FLAGS_ANON, PageKind.ZERO_PAGE),
    ("anon 6.12", 0x800000000501B867, Level.PTE, L612, VM_FLAGS_ANON, PageKind.RAM),
]


@pytest.mark.parametrize("name,raw,level,layout,flags,page", LAB_CLEAN, ids=[c[0] for c in LAB_CLEAN])
def test_lab_mappings_are_clean(name, raw, level, layout, flags, page):
    assert fired(lab(raw, level, layout, flags, page), layout) == {}


# --- one case per rule per outcome -------------------------------------------

PFNMAP_SHARED = vm(L72, "READ", "WRITE", "SHARED", "MAYSHARE", "MAYWRITE", "PFNMAP", "IO")
PFNMAP_PRIVATE = vm(L72, "READ", "WRITE", "MAYREAD", "MAYWRITE", "PFNMAP", "IO")
IO_MIXED = vm(L72, "READ", "SHARED", "MAYSHARE", "IO", "MIXEDMAP")
MIXED_PRIVATE = vm(L72, "READ", "WRITE", "MAYWRITE", "MIXEDMAP")
P2P_SHARED_RDONLY = vm(L72, "READ", "MAYREAD", "MAYSHARE", "MIXEDMAP")
P = EntryKind.PRESENT

# (rule id, fires?, layout, run, substring expected in the message when it fires)
CASES = [
    # pfnmap-not-special
    ("pfnmap-not-special", True, L72, run(make_vma(PFNMAP_SHARED), leaf(pfn=0x5000), PageKind.RAM), "without special (bit 9)"),
    ("pfnmap-not-special", False, L72, run(make_vma(PFNMAP_SHARED), leaf(pfn=0x5000, special=True), PageKind.RAM), None),
    # COWed anon page of a private PFNMAP: RAM, not at the linear PFN → legitimate.
    ("pfnmap-not-special", False, L72, run(make_vma(PFNMAP_PRIVATE, pgoff=0x9000), leaf(pfn=0x5000), PageKind.RAM), None),
    # ... but at the linear PFN it is the remapped page itself.
    ("pfnmap-not-special", True, L72, run(make_vma(PFNMAP_PRIVATE, pgoff=0x5000), leaf(pfn=0x5000), PageKind.RAM), "at the linear PFN"),
    ("pfnmap-not-special", True, L612, run(make_vma(PFNMAP_SHARED), leaf(level=Level.PMD, pfn=0x200), PageKind.RAM), "PMD in a VM_PFNMAP"),
    ("pfnmap-not-special", False, L61, run(make_vma(PFNMAP_SHARED), leaf(level=Level.PMD, pfn=0x200), PageKind.RAM), None),
    # huge-pfn-not-special
    ("huge-pfn-not-special", True, L61, run(make_vma(PFNMAP_SHARED), leaf(level=Level.PMD, pfn=0x200, special=True), PageKind.NO_MEMMAP),
     "without pmd_special()"),
    ("huge-pfn-not-special", True, L61, run(make_vma(PFNMAP_SHARED), leaf(level=Level.PUD, pfn=0x40000), PageKind.RAM), "VM_PFNMAP/VM_IO"),
    ("huge-pfn-not-special", True, L72, run(make_vma(PFNMAP_SHARED), leaf(level=Level.PUD, pfn=0x140000), PageKind.NO_MEMMAP),
     "special (bit 9) is clear"),
    ("huge-pfn-not-special", True, L72, run(make_vma(IO_MIXED), leaf(level=Level.PMD, pfn=0x200), PageKind.RAM), "VM_IO VMA"),
    ("huge-pfn-not-special", False, L72, run(make_vma(PFNMAP_SHARED), leaf(level=Level.PUD, pfn=0x140000, special=True), PageKind.NO_MEMMAP), None),
    ("huge-pfn-not-special", False, L61, run(make_vma(VM_FLAGS_ANON), leaf(level=Level.PMD, pfn=0x200), PageKind.RAM), None),
    # no-memmap-not-special
    ("no-memmap-not-special", True, L72, run(make_vma(PFNMAP_SHARED), leaf(pfn=0x184000), PageKind.NO_MEMMAP, owner="0000:00:04.0 BAR2"),
     "(0000:00:04.0 BAR2) but special (bit 9) is clear"),
    ("no-memmap-not-special", False, L72, run(make_vma(PFNMAP_SHARED), leaf(pfn=0x184000, special=True), PageKind.NO_MEMMAP), None),
    ("no-memmap-not-special", False, L72, run(make_vma(PFNMAP_SHARED), leaf(level=Level.PMD, pfn=0x184000), PageKind.NO_MEMMAP), None),
    # no-memmap-outside-pfnmap
    ("no-memmap-outside-pfnmap", True, L72, run(make_vma(VM_FLAGS_ANON), leaf(pfn=0x184000, special=True), PageKind.NO_MEMMAP),
     "neither VM_PFNMAP nor VM_MIXEDMAP"),
    ("no-memmap-outside-pfnmap", False, L72, run(make_vma(MIXED_PRIVATE), leaf(pfn=0x184000, special=True), PageKind.NO_MEMMAP), None),
    ("no-memmap-outside-pfnmap", False, L72, run(make_vma(PFNMAP_SHARED), leaf(pfn=0x184000, special=True), PageKind.NO_MEMMAP), None),
    # special-outside-pfnmap
    ("special-outside-pfnmap", True, L72, run(make_vma(VM_FLAGS_ANON), leaf(special=True), PageKind.RAM), "Bad page map"),
    ("special-outside-pfnmap", True, L72, run(make_vma(VM_FLAGS_ANON), leaf(level=Level.PMD, pfn=0x200, special=True), PageKind.RAM),
     "PMD with special"),
    ("special-outside-pfnmap", False, L72, run(make_vma(VM_FLAGS_ANON), leaf(special=True, writable=False), PageKind.ZERO_PAGE), None),
    ("special-outside-pfnmap", False, L72, run(make_vma(VM_FLAGS_ANON), leaf(level=Level.PMD, pfn=0x3E000, special=True), PageKind.HUGE_ZERO), None),
    # Bit 9 on a 6.1 PMD is not pmd_special(): the kernel never reads it.
    ("special-outside-pfnmap", False, L61, run(make_vma(VM_FLAGS_ANON), leaf(level=Level.PMD, pfn=0x200, special=True), PageKind.RAM), None),
    ("special-outside-pfnmap", False, L61, run(make_vma(VM_FLAGS_ANON), leaf(special=True, devmap=True), PageKind.RAM), None),
    # p2pdma-leaf
    ("p2pdma-leaf", True, L72, run(make_vma(VM_FLAGS_P2P), leaf(special=True), PageKind.P2PDMA), "special (bit 9) is set"),
    ("p2pdma-leaf", True, L612, run(make_vma(VM_FLAGS_P2P), leaf(special=True, devmap=True), PageKind.P2PDMA), "devmap (bit 57) is set"),
    ("p2pdma-leaf", True, L72, run(make_vma(VM_FLAGS_P2P), leaf(level=Level.PMD, pfn=0x200), PageKind.P2PDMA), "huge PMD leaf"),
    ("p2pdma-leaf", True, L72, run(make_vma(PFNMAP_SHARED), leaf(), PageKind.P2PDMA), "in a VM_PFNMAP VMA mapped wrongly: special (bit 9) is clear"),
    ("p2pdma-leaf", True, L612, run(make_vma(PFNMAP_SHARED), leaf(special=True, devmap=True), PageKind.P2PDMA), "devmap (bit 57) is set"),
    ("p2pdma-leaf", True, L61, run(make_vma(PFNMAP_SHARED), leaf(level=Level.PMD, pfn=0x200, special=True), PageKind.P2PDMA),
     "kernel without pmd_special()"),
    ("p2pdma-leaf", False, L72, run(make_vma(VM_FLAGS_P2P), leaf(), PageKind.P2PDMA), None),
    # sysfs resourceN mmap of a BAR that also hosts p2pmem: io_remap_pfn_range()'s special PTEs.
    ("p2pdma-leaf", False, L72, run(make_vma(VM_FLAGS_PCIBAR), leaf(special=True), PageKind.P2PDMA), None),
    ("p2pdma-leaf", False, L61, run(make_vma(VM_FLAGS_PCIBAR), leaf(special=True), PageKind.P2PDMA), None),
    # p2pdma-vma-flags
    ("p2pdma-vma-flags", True, L72, run(make_vma(MIXED_PRIVATE), leaf(), PageKind.P2PDMA), "without VM_MAYSHARE"),
    ("p2pdma-vma-flags", True, L72, run(make_vma(vm(L72, "SHARED", "MAYSHARE")), leaf(), PageKind.P2PDMA), "without VM_MIXEDMAP"),
    ("p2pdma-vma-flags", False, L72, run(make_vma(VM_FLAGS_P2P), leaf(), PageKind.P2PDMA), None),
    # MAP_SHARED of p2pmem/allocate opened O_RDONLY: do_mmap() drops VM_SHARED and
    # keeps VM_MAYSHARE; p2pmem_alloc_mmap() accepts it.
    ("p2pdma-vma-flags", False, L72, run(make_vma(P2P_SHARED_RDONLY), leaf(writable=False), PageKind.P2PDMA), None),
    # dax-leaf-bits
    ("dax-leaf-bits", True, L61, run(make_vma(VM_FLAGS_FSDAX), leaf(special=True), PageKind.FSDAX), "lacks devmap (bit 58)"),
    ("dax-leaf-bits", True, L612, run(make_vma(VM_FLAGS_FSDAX), leaf(), PageKind.FSDAX),
     "lacks special (bit 9) and devmap (bit 57)"),
    ("dax-leaf-bits", True, L61, run(make_vma(VM_FLAGS_FSDAX), leaf(level=Level.PMD, pfn=0x200), PageKind.DEVDAX), "devmap (bit 58) is clear"),
    ("dax-leaf-bits", True, L612, run(make_vma(VM_FLAGS_FSDAX), leaf(level=Level.PMD, pfn=0x200, devmap=True, special=True), PageKind.DEVDAX),
     "special (bit 9) is set"),
    ("dax-leaf-bits", True, L72, run(make_vma(VM_FLAGS_FSDAX), leaf(special=True), PageKind.FSDAX), "refcounted"),
    ("dax-leaf-bits", False, L61, run(make_vma(VM_FLAGS_FSDAX), leaf(level=Level.PMD, pfn=0x200, devmap=True), PageKind.DEVDAX), None),
    ("dax-leaf-bits", False, L72, run(make_vma(VM_FLAGS_FSDAX), leaf(level=Level.PUD, pfn=0x40000), PageKind.DEVDAX), None),
    # dax-in-pfnmap
    ("dax-in-pfnmap", True, L72, run(make_vma(PFNMAP_SHARED), leaf(), PageKind.FSDAX), "in a VM_PFNMAP VMA"),
    ("dax-in-pfnmap", False, L72, run(make_vma(VM_FLAGS_FSDAX), leaf(), PageKind.FSDAX), None),
    # devmap-not-dax
    ("devmap-not-dax", True, L612, run(make_vma(VM_FLAGS_ANON), leaf(special=True, devmap=True), PageKind.RAM), "maps a ram page"),
    ("devmap-not-dax", True, L61, run(make_vma(VM_FLAGS_P2P), leaf(special=True, devmap=True), PageKind.P2PDMA), "maps a p2pdma page"),
    ("devmap-not-dax", False, L612, run(make_vma(VM_FLAGS_FSDAX), leaf(special=True, devmap=True), PageKind.FSDAX), None),
    # devmap-pte-not-special
    ("devmap-pte-not-special", True, L612, run(make_vma(VM_FLAGS_ANON), leaf(devmap=True), PageKind.RAM), "special (bit 9) clear"),
    ("devmap-pte-not-special", False, L612, run(make_vma(VM_FLAGS_ANON), leaf(devmap=True, special=True), PageKind.RAM), None),
    ("devmap-pte-not-special", False, L612, run(make_vma(VM_FLAGS_ANON), leaf(level=Level.PMD, devmap=True), PageKind.DEVDAX), None),
    # device-private-present
    ("device-private-present", True, L72, run(make_vma(VM_FLAGS_ANON), leaf(pfn=0xFCFFFFF), PageKind.DEVICE_PRIVATE), "not CPU addressable"),
    ("device-private-present", True, L72, run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.PROTNONE, pfn=0xFCFFFFF), PageKind.DEVICE_PRIVATE),
     "protnone PTE"),
    ("device-private-present", False, L72,
     run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.DEVICE_PRIVATE, pfn=0xFCFFFFF, swap_type=28), PageKind.DEVICE_PRIVATE), None),
    # device-private-entry-target
    ("device-private-entry-target", True, L72,
     run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.DEVICE_PRIVATE, pfn=0x5000, swap_type=28), PageKind.RAM), "is System RAM"),
    ("device-private-entry-target", True, L72,
     run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.DEVICE_PRIVATE, pfn=0x5000, swap_type=28), PageKind.DEVICE_COHERENT), "device-coherent"),
    ("device-private-entry-target", False, L72,
     run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.DEVICE_PRIVATE, pfn=0xFCFFFFF, swap_type=28), PageKind.DEVICE_PRIVATE), None),
    # migration-target
    ("migration-target", True, L72, run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.MIGRATION, swap_type=27), PageKind.NO_MEMMAP), "no-memmap"),
    ("migration-target", True, L72, run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.MIGRATION, swap_type=27), PageKind.FSDAX), "fsdax"),
    ("migration-target", False, L72, run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.MIGRATION, swap_type=27), PageKind.RAM), None),
    ("migration-target", False, L72, run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.MIGRATION, swap_type=25), PageKind.DEVICE_PRIVATE), None),
    # device-exclusive-target
    ("device-exclusive-target", True, L612_DP,
     run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.DEVICE_EXCLUSIVE, swap_type=29), PageKind.P2PDMA), "expected an anonymous"),
    ("device-exclusive-target", True, L72,
     run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.DEVICE_EXCLUSIVE, swap_type=29), PageKind.FSDAX), "fsdax"),
    # An anonymous device-coherent folio: GUP returns it, make_device_exclusive() takes it.
    ("device-exclusive-target", False, L612_DP,
     run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.DEVICE_EXCLUSIVE, swap_type=29), PageKind.DEVICE_COHERENT), None),
    ("device-exclusive-target", False, L612_DP,
     run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.DEVICE_EXCLUSIVE, swap_type=29), PageKind.RAM), None),
    # device-coherent-mapping
    ("device-coherent-mapping", True, L72, run(make_vma(vm(L72, "READ", "WRITE", "SHARED", "MAYSHARE"), file="/memfd:x (deleted)"), leaf(),
                                                PageKind.DEVICE_COHERENT), "the VMA is shared (/memfd:x (deleted))"),
    # A COWed anonymous page of a MAP_PRIVATE file mapping (a program's .data) migrates legitimately.
    ("device-coherent-mapping", False, L72, run(make_vma(VM_FLAGS_ANON, file="/usr/bin/prog"), leaf(), PageKind.DEVICE_COHERENT), None),
    ("device-coherent-mapping", True, L72, run(make_vma(MIXED_PRIVATE), leaf(special=True), PageKind.DEVICE_COHERENT),
     "special (bit 9) is set, the VMA has VM_MIXEDMAP"),
    ("device-coherent-mapping", False, L72, run(make_vma(VM_FLAGS_ANON), leaf(), PageKind.DEVICE_COHERENT), None),
    # garbage-entry
    ("garbage-entry", True, L72,
     run(make_vma(VM_FLAGS_ANON), X.decode_leaf(0xE7FFFFE060000002, VA, Level.PUD, L72), PageKind.NONE), "non-present PUD entry (TYPE=28"),
    ("garbage-entry", True, L72, run(make_vma(VM_FLAGS_ANON), X.decode_leaf(0x12345067, VA, Level.PMD, L72), PageKind.NONE),
     "not a valid leaf"),
    ("garbage-entry", False, L72, run(make_vma(VM_FLAGS_ANON), leaf(kind=EntryKind.SWAP, pfn=None, swap_type=0), PageKind.NONE), None),
]


@pytest.mark.parametrize("rule_id,fires,layout,r,text", CASES, ids=[f"{c[0]}-{'fires' if c[1] else 'silent'}-{i}" for i, c in enumerate(CASES)])
def test_rule_case(rule_id, fires, layout, r, text):
    assert R.rule_by_id(rule_id).applies(layout) is None
    found = fired(r, layout)
    if not fires:
        assert rule_id not in found
        return
    assert rule_id in found, found
    f = found[rule_id]
    assert text in f.message, f.message
    assert (f.severity, f.vma, f.start, f.end, f.count, f.first, f.page) == (
        R.rule_by_id(rule_id).severity, r.vma, r.start, r.end, r.count, r.first, r.page)
    ev = dict(f.evidence)
    assert ev["raw"] == f"{r.first.raw:#018x}" and "vm_flags" in ev


def test_one_defect_one_finding():
    # A non-special BAR PTE in a PFNMAP VMA is "no memmap, not special" only.
    r = run(make_vma(PFNMAP_SHARED), leaf(pfn=0x184000), PageKind.NO_MEMMAP)
    assert set(fired(r, L72)) == {"no-memmap-not-special"}
    # A non-special 2M BAR leaf: the huge rule only.
    r = run(make_vma(PFNMAP_SHARED), leaf(level=Level.PMD, pfn=0x184000), PageKind.NO_MEMMAP)
    assert set(fired(r, L72)) == {"huge-pfn-not-special"}
    # A 6.1 DAX PTE with only the special bit: dax-leaf-bits, not "Bad page map".
    r = run(make_vma(VM_FLAGS_FSDAX), leaf(special=True), PageKind.FSDAX)
    assert set(fired(r, L61)) == {"dax-leaf-bits"}


# --- VMA rules -----------------------------------------------------------------


def summary(flags, runs, layout=L72):
    vma = make_vma(flags)
    tally = R.VmaTally(vma, layout)
    for lf, page, n in runs:
        tally.add(run(vma, lf, page, count=n))
    return tally.summary()


def test_mixedmap_all_struct_pages_fires_on_p2pdma_mmap():
    s = summary(VM_FLAGS_P2P, [(leaf(), PageKind.P2PDMA, 16), (leaf(kind=EntryKind.SWAP, pfn=None), PageKind.NONE, 2)])
    assert (s.present, s.nonpresent, s.kinds) == (16, 2, {PageKind.P2PDMA: 16})
    (f,) = R.evaluate_vma(s, L72)
    assert (f.rule, f.severity, f.count, f.first) == ("mixedmap-all-struct-pages", Severity.INFO, 16, None)
    assert (f.start, f.end) == (s.vma.start, s.vma.end)
    assert "p2pdma 16" in f.message and "only pages with a struct page" in f.message


@pytest.mark.parametrize(
    "flags,runs",
    [
        (VM_FLAGS_P2P, [(leaf(), PageKind.P2PDMA, 4), (leaf(special=True), PageKind.NO_MEMMAP, 1)]),  # truly mixed
        (VM_FLAGS_P2P, []),  # nothing mapped yet
        (VM_FLAGS_P2P, [(leaf(kind=EntryKind.SWAP, pfn=None), PageKind.NONE, 3)]),
        (VM_FLAGS_ANON, [(leaf(), PageKind.RAM, 4)]),  # not MIXEDMAP
        # vm_insert_page(s)() sets VM_MIXEDMAP itself (v3.7, 4b6e1e37026e "mm: kill vma flag
        # VM_INSERTPAGE"): AF_PACKET, io_uring and TCP zerocopy rings map RAM only.
        (VM_FLAGS_P2P, [(leaf(), PageKind.RAM, 16)]),
        # 7.x [vvar]: _install_special_mapping(VM_MIXEDMAP|VM_IO) of the vDSO data page (lib/vdso/datastore.c).
        (VM_FLAGS_P2P, [(leaf(), PageKind.RAM, 1), (leaf(special=True), PageKind.ZERO_PAGE, 1)]),
    ],
)
def test_mixedmap_all_struct_pages_silent(flags, runs):
    assert R.evaluate_vma(summary(flags, runs), L72) == []


@pytest.mark.parametrize("kind", [PageKind.DEVDAX, PageKind.DEVICE_GENERIC, PageKind.DEVICE_COHERENT])
def test_mixedmap_all_struct_pages_fires_on_any_zone_device_page(kind):
    """The thread's case is ZONE_DEVICE pages (pte_devmap, a pgmap) mapped through VM_MIXEDMAP; RAM next to them does not excuse it."""
    (f,) = R.evaluate_vma(summary(VM_FLAGS_P2P, [(leaf(), kind, 2), (leaf(), PageKind.RAM, 2)]), L72)
    assert f.rule == "mixedmap-all-struct-pages" and f"{kind.value} 2" in f.message


def test_tally_counts_special_as_the_kernel_reads_it():
    runs = [(leaf(level=Level.PMD, special=True), PageKind.RAM, 2), (leaf(special=True), PageKind.ZERO_PAGE, 3),
            (leaf(kind=EntryKind.GARBAGE, pfn=None), PageKind.NONE, 1)]
    s61, s72 = summary(VM_FLAGS_ANON, runs, L61), summary(VM_FLAGS_ANON, runs, L72)
    assert (s61.special, s72.special, s72.huge, s72.garbage, s72.present) == (3, 5, 2, 1, 5)


def test_evaluate_runs_streams_run_then_vma_findings():
    vma = make_vma(VM_FLAGS_P2P)
    runs = [run(vma, leaf(), PageKind.P2PDMA, 2), run(vma, leaf(va=VA + 0x2000, special=True), PageKind.P2PDMA)]
    assert [f.rule for f in R.evaluate_runs(vma, runs, L72)] == ["p2pdma-leaf", "mixedmap-all-struct-pages"]


def test_explicit_rule_selection():
    vma = make_vma(VM_FLAGS_P2P)
    runs = [run(vma, leaf(special=True), PageKind.P2PDMA)]
    only_vma = [R.rule_by_id("mixedmap-all-struct-pages")]
    assert [f.rule for f in R.evaluate_runs(vma, runs, L72, only_vma)] == ["mixedmap-all-struct-pages"]
    assert R.evaluate_run(runs[0], L72, only_vma) == []
    both = [R.rule_by_id("p2pdma-leaf"), R.rule_by_id("mixedmap-all-struct-pages")]
    assert [f.rule for f in R.evaluate_run(runs[0], L72, both)] == ["p2pdma-leaf"]


# --- applicability ---------------------------------------------------------------


def test_applies_reports_reasons():
    assert "v6.17" in R.rule_by_id("devmap-not-dax").applies(L72)
    assert R.rule_by_id("devmap-not-dax").applies(L612) is None
    assert "CONFIG_DEVICE_PRIVATE" in R.rule_by_id("device-private-entry-target").applies(L612)
    assert R.rule_by_id("device-private-entry-target").applies(L61_DP) is None
    assert "CONFIG_DEVICE_PRIVATE" in R.rule_by_id("device-exclusive-target").applies(L61)
    odd = dataclasses.replace(L72, devmap_bit=None, dax_refcounted=False)
    assert "inconsistent" in R.rule_by_id("dax-leaf-bits").applies(odd)
    no_mig = dataclasses.replace(L72, swap=dataclasses.replace(L72.swap, migration_read=None))
    assert "CONFIG_MIGRATION" in R.rule_by_id("migration-target").applies(no_mig)
    no_coh = dataclasses.replace(L72, memory_types={"PRIVATE": 1})
    assert R.rule_by_id("device-coherent-mapping").applies(no_coh)
    run_rules, vma_rules = R.rules_for(L72)
    assert "devmap-not-dax" not in {r.id for r in run_rules}
    assert [r.id for r in vma_rules] == ["mixedmap-all-struct-pages"]


def test_rule_not_applicable_does_not_fire():
    # A devmap bit on 7.2 is bit 57 with no owner: the devmap rules do not run.
    r = run(make_vma(VM_FLAGS_ANON), leaf(devmap=True), PageKind.RAM)
    assert fired(r, L72) == {}


# --- the catalogue itself --------------------------------------------------------


def test_catalogue_shape():
    ids = [r.id for r in R.RULES]
    assert len(ids) == len(set(ids))
    for r in R.RULES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.id), r.id
        assert r.thread in THREADS, r.thread
        assert isinstance(r.severity, Severity) and r.title and r.quote and r.kernels
        assert r.scope in ("run", "vma")
        assert R.rule_by_id(r.id) is r
    with pytest.raises(KeyError):
        R.rule_by_id("no-such-rule")


def test_every_rule_has_firing_and_silent_cases():
    fires = {c[0] for c in CASES if c[1]} | {"mixedmap-all-struct-pages"}
    silent = {c[0] for c in CASES if not c[1]} | {"mixedmap-all-struct-pages"}
    assert fires == silent == {r.id for r in R.RULES}


def _threads_dir():
    # The threads live beside the repository in the shared material, not in it.
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "threads"
        if candidate.is_dir():
            return candidate
    return None


def _normalise(text: str) -> str:
    lines = (re.sub(r"^[>\s]+", "", line) for line in text.splitlines())
    return re.sub(r"\s+", " ", " ".join(lines))


def test_quotes_are_verbatim():
    d = _threads_dir()
    if d is None:
        # A user's clone has no shared material beside it; CI always has it.
        if os.environ.get("CI") == "true":
            pytest.fail("shared/threads not found beside the repository under CI")
        pytest.skip("shared/threads not found beside the repository")
    for r in R.RULES:
        assert _normalise(r.quote) in _normalise((d / r.thread).read_text()), r.id


def test_vm_flag_names():
    assert L72.vm_flag_names(0x400 | 0x4000 | 1 << 39) == ["PFNMAP", "IO", "ALLOW_ANY_UNCACHED"]
    assert L61.vm_flag_names(1 << 50) == ["bit50"]
    assert L61.vm_flag_names(0) == []


# --- MEMORY_DEVICE_GENERIC beyond device-dax ---------------------------------------


def test_generic_pgmap_kinds():
    from drgn_p2p.classify import pagemap_kind

    # dev_dax_probe() sets neither ops nor owner; Xen's unpopulated-alloc sets owner.
    assert pagemap_kind("GENERIC", 0, 0) == PageKind.DEVDAX
    assert pagemap_kind("GENERIC", 0, 0xFFFF_8880_0200_0000) == PageKind.DEVICE_GENERIC
    assert pagemap_kind("FS_DAX", 0xFFFF_FFFF_8200_0000, 0xFFFF_8880_0200_0000) == PageKind.FSDAX
    assert PageKind.DEVICE_GENERIC.is_zone_device


def test_xen_gntdev_mapping_is_clean():
    # gntdev maps Xen's unpopulated GENERIC pages with plain refcounted PTEs
    # (vm_insert_page) in a VM_MIXEDMAP VMA: no DAX rule judges them.
    gntdev = vm(L72, "READ", "WRITE", "SHARED", "MAYSHARE", "DONTEXPAND", "DONTDUMP", "MIXEDMAP")
    for layout in (L61, L612, L72):
        r = run(make_vma(gntdev, file="/dev/xen/gntdev"), leaf(), PageKind.DEVICE_GENERIC, owner="Xen scratch")
        assert {f.rule: f.severity for f in R.evaluate_run(r, layout)} == {}
        # The same leaf on a device-dax page would be a DAX defect before v6.15.
    assert "dax-leaf-bits" in fired(run(make_vma(gntdev), leaf(), PageKind.DEVDAX), L61)
