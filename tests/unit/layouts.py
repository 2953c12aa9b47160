# SPDX-License-Identifier: GPL-2.0-or-later
"""Layouts of the three lab kernels (Debian 6.1, 6.12, 7.2 on x86-64), built
from the version tables exactly as the layout stage falls back to them, for
tests that must not read a kernel."""

from typing import Optional

from drgn_p2p import layout_tables as lt
from drgn_p2p.records import EntryKind, Layout, Leaf, Level, PageKind, PfnInfo, Run, Vma

#: PTE_PFN_MASK with __PHYSICAL_MASK_SHIFT 52 and no SME.
PFN_MASK = 0x000F_FFFF_FFFF_F000
MEMORY_TYPES = {"PRIVATE": 1, "COHERENT": 2, "FS_DAX": 3, "GENERIC": 4, "PCI_P2PDMA": 5}
ZERO_PFN = 0x2E731  # from the lab's zero-page PTE 0x800000002e731225
HUGE_ZERO_PFN = 0x3E000


def make_layout(
    version: tuple,
    *,
    device_private: Optional[bool] = None,
    levels: int = 5,
    sme_mask: int = 0,
) -> Layout:
    """A Layout for Debian's kernel *version* (``(6, 1)``, ``(6, 12)``, ``(7, 2)``).

    *device_private* defaults to Debian's ``CONFIG_DEVICE_PRIVATE`` (n before 7.x).
    """
    if device_private is None:
        device_private = version >= (7, 0)
    pmd_special, pud_special = lt.has_pmd_pud_special(version)
    p2pdma_gate, longterm_file_check, fast_renamed = lt.gup_facts(version)
    swap = lt.swap_types(
        device_private=device_private,
        single_device_exclusive=lt.single_device_exclusive(version),
        has_swapin_error=lt.has_swapin_error(version),
        has_pte_marker=True,
        pfn_bits=(52 if levels == 5 else 46) - 12,
    )
    return Layout(
        arch="x86_64",
        release="%d.%d.0-test" % version,
        levels=levels,
        page_shift=12,
        pfn_mask=PFN_MASK & ~sme_mask,
        sme_mask=sme_mask,
        devmap_bit=lt.devmap_bit(version),
        has_pmd_special=pmd_special,
        has_pud_special=pud_special,
        dax_refcounted=lt.dax_refcounted(version),
        swap=swap,
        pte_markers=lt.pte_markers(version),
        vm_flags=lt.vm_flag_bits(version),
        memory_types=dict(MEMORY_TYPES),
        pgmap_in="folio" if version >= (6, 15) else "page",
        zone_device=4,
        zero_pfn=ZERO_PFN,
        huge_zero_pfn=HUGE_ZERO_PFN,
        gup_p2pdma_gate=p2pdma_gate,
        gup_longterm_file_check=longterm_file_check,
        gup_fast_renamed=fast_renamed,
    )


L61 = make_layout((6, 1))
L61_DP = make_layout((6, 1), device_private=True)
L612 = make_layout((6, 12))
L612_DP = make_layout((6, 12), device_private=True)
L72 = make_layout((7, 2))
L72_4LVL = make_layout((7, 2), levels=4)


# --- records for rule and coalesce tests ------------------------------------

#: Debian 7.2 VMA flags seen in the lab (qemu-lab.md §7).
VM_FLAGS_PCIBAR = 0xC0444BB  # SHARED|MAYSHARE|PFNMAP|IO|DONTEXPAND|DONTDUMP|SOFTDIRTY|…
VM_FLAGS_P2P = 0x180000BB  # SHARED|MAYSHARE|SOFTDIRTY|MIXEDMAP|…
VM_FLAGS_FSDAX = 0x288000FB  # SHARED|SYNC|SOFTDIRTY|HUGEPAGE|…
VM_FLAGS_ANON = 0x8100073  # READ|WRITE|MAYREAD|MAYWRITE|MAYEXEC|ACCOUNT|SOFTDIRTY


def vm(layout: Layout, *names: str) -> int:
    """VMA flags from names: ``vm(L72, "PFNMAP", "IO")``."""
    flags = 0
    for n in names:
        flags |= 1 << layout.vm_flags[n]
    return flags


def make_vma(flags: int, start: int = 0x7F00_0000_0000, end: int = 0x7F00_4000_0000, pgoff: int = 0, file: Optional[str] = None) -> Vma:
    return Vma(pid=1, comm="test", mm=0xFFFF_8880_0000_1000, address=0xFFFF_8880_0000_2000,
               start=start, end=end, flags=flags, pgoff=pgoff, file=file, ops=None)


def leaf(va: int = 0x7F00_0000_0000, level: Level = Level.PTE, kind: EntryKind = EntryKind.PRESENT, pfn: Optional[int] = 0x1000,
         special: bool = False, devmap: bool = False, writable: bool = True, raw: int = 0x8000000000001067,
         swap_type: Optional[int] = None) -> Leaf:
    return Leaf(va, level, raw, kind, pfn, special=special, devmap=devmap, writable=writable, swap_type=swap_type)


def run(vma: Vma, lf: Leaf, page: PageKind, count: int = 1, owner: Optional[str] = None) -> Run:
    return Run(vma, lf, count, PfnInfo(page, pgmap=0xFFFF_8880_1000_0000 if page.is_zone_device else None, owner=owner))
