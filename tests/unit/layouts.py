# SPDX-License-Identifier: GPL-2.0-or-later
"""Layouts of the three lab kernels (Debian 6.1, 6.12, 7.2 on x86-64), built
from the version tables exactly as the layout stage falls back to them, for
tests that must not read a kernel."""

import dataclasses
from typing import Optional

from drgn_p2p import layout_tables as lt
from drgn_p2p.arch import x86_64
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

    *device_private* defaults to Debian's ``CONFIG_DEVICE_PRIVATE`` (n before 7.x),
    ``proc_mem_force`` to Debian's CONFIG_PROC_MEM_* (ALWAYS_FORCE in 6.12,
    FORCE_PTRACE in 7.2).
    """
    if device_private is None:
        device_private = version >= (7, 0)
    pmd_special, pud_special = lt.has_pmd_pud_special(version)
    p2pdma_gate, longterm_file_check, fast_renamed, defio_mapping = lt.gup_facts(version)
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
        fb_defio_page_mapping=defio_mapping,
        proc_mem_force="ptrace" if version >= (7, 0) else "always",
        gup_fast_secretmem_mapping=fast_renamed,  # Debian: CONFIG_SECRETMEM=y
        geometry=x86_64.geometry(levels, PFN_MASK & ~sme_mask),
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


# --- arm64 -------------------------------------------------------------------


def make_arm64_layout(
    version: tuple,
    *,
    page_shift: int = 12,
    va_bits: int = 52,
    pa52_64k: bool = False,
    device_private: Optional[bool] = None,
) -> Layout:
    """A Layout for Debian's arm64 kernel *version* with *va_bits* in use
    (``vabits_actual``): LPA2 is on exactly for 4K/16K pages with 52 bits,
    as the layout stage learns it from vmcoreinfo."""
    from drgn_p2p.arch import arm64

    if device_private is None:
        device_private = version >= (7, 0)
    lpa2 = page_shift != 16 and va_bits == 52
    physmem = 52 if lpa2 or pa52_64k else 48
    geometry = arm64.geometry(page_shift, va_bits, lpa2, pa52_64k, lt.arm64_addr_top(version))
    pmd_special, _ = lt.has_pmd_pud_special(version, "arm64")
    swap = lt.swap_types(
        device_private=device_private,
        single_device_exclusive=lt.single_device_exclusive(version),
        has_swapin_error=lt.has_swapin_error(version),
        # No uffd-wp on arm64 before v6.10: 6.1 has no PTE marker (arm64-facts §5.3).
        has_pte_marker=version >= (6, 10),
        pfn_bits=physmem - page_shift,
    )
    # What arm64 shares with x86-64 per release (DAX, markers, pgmap, GUP facts) from make_layout().
    return dataclasses.replace(
        make_layout(version, device_private=device_private),
        arch="arm64",
        release="%d.%d.0-test-arm64" % version,
        levels=len(geometry.levels),
        page_shift=page_shift,
        pfn_mask=geometry.addr_mask,
        sme_mask=0,
        devmap_bit=lt.devmap_bit(version, "arm64"),
        has_pmd_special=pmd_special,
        has_pud_special=False,
        swap=swap,
        vm_flags=lt.vm_flag_bits(version, "arm64"),
        geometry=geometry,
        arm64=lt.arm64_bits(version, lpa2=lpa2, uffd_wp=version >= (6, 10), mair=arm64.MAIR_TYPES),
    )


A61 = make_arm64_layout((6, 1), va_bits=48)
A612 = make_arm64_layout((6, 12))
A72 = make_arm64_layout((7, 2))
A72_48 = make_arm64_layout((7, 2), va_bits=48)  # LPA2 off: 4 levels
A72_16K = make_arm64_layout((7, 2), page_shift=14)
A72_16K_47 = make_arm64_layout((7, 2), page_shift=14, va_bits=47)
A72_64K_52 = make_arm64_layout((7, 2), page_shift=16, va_bits=52, pa52_64k=True)
