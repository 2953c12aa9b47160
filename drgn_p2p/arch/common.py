# SPDX-License-Identifier: GPL-2.0-or-later
"""
What every decoder shares
-------------------------

The :class:`Leaf` of an entry that maps a PFN (:func:`mapped_leaf`), and what
a non-present entry's swap type and offset mean, which is generic mm
(``include/linux/swapops.h``, ``include/linux/swap.h``); only where the bits
sit in the entry is architecture-specific. Each architecture's decoder
extracts them its own way and hands them here.
"""

from typing import Optional

from ..records import EntryKind, Layout, Leaf, Level

__all__ = ("DECODER_API", "mapped_leaf", "swap_leaf", "swap_type_name")

#: What every architecture's decoder module provides (see :mod:`drgn_p2p.arch`).
DECODER_API = ("decode_leaf", "is_table", "table_phys", "geometry", "describe", "run_bits", "SPECIAL_BIT")

# Migration entries may carry SWP_MIG_YOUNG and SWP_MIG_DIRTY just above the PFN.
_MIG_EXTRA_BITS = 2


def mapped_leaf(raw: int, va: int, level: Level, kind: EntryKind, pfn: int, layout: Layout, *, special: bool,
                writable: bool) -> Leaf:
    """The :class:`Leaf` of a present or PROT_NONE entry mapping *pfn*; ``devmap``
    is bit ``layout.devmap_bit`` of *raw* (never set where the kernel has none)."""
    devmap_bit = layout.devmap_bit
    return Leaf(va, level, raw, kind, pfn, special=special,
                devmap=devmap_bit is not None and bool(raw >> devmap_bit & 1), writable=writable,
                page_shift=layout.page_shift)


def swap_leaf(raw: int, va: int, level: Level, layout: Layout, stype: int, offset: int) -> Leaf:
    """The :class:`Leaf` of a swap-format entry with type *stype* and offset *offset*.

    PFN-carrying types hold ``offset & SWP_PFN_MASK``
    (``SWP_PFN_BITS = MAX_PHYSMEM_BITS - PAGE_SHIFT``); an entry no type of
    this kernel explains, or one at a level its type never appears at, is
    :attr:`EntryKind.GARBAGE`.
    """

    def leaf(kind: EntryKind, pfn: Optional[int] = None, writable: bool = False) -> Leaf:
        return Leaf(va, level, raw, kind, pfn, writable=writable, swap_type=stype, swap_offset=offset,
                    page_shift=layout.page_shift)

    garbage = leaf(EntryKind.GARBAGE)
    st = layout.swap
    pfn_bits = st.pfn_bits
    pfn = offset & ((1 << pfn_bits) - 1)
    high = offset >> pfn_bits  # must be 0 for PFN-carrying types (but migration flags)
    is_pte = level == Level.PTE

    if stype < st.max_swapfiles:
        # A real swap device; THP/hugetlb never swap out as a PMD/PUD entry.
        return leaf(EntryKind.SWAP) if is_pte else garbage
    if stype in (st.migration_read, st.migration_read_exclusive, st.migration_write):
        # PTE, THP PMD migration, hugetlb PMD/PUD migration.
        if high >> _MIG_EXTRA_BITS:
            return garbage
        return leaf(EntryKind.MIGRATION, pfn, stype == st.migration_write)
    if stype in (st.device_write, st.device_read):
        # PTE, or (7.x, THP migration of device-private folios) PMD.
        if high or level == Level.PUD:
            return garbage
        return leaf(EntryKind.DEVICE_PRIVATE, pfn, stype == st.device_write)
    if stype in (st.device_exclusive_write, st.device_exclusive_read):
        if high or not is_pte:
            return garbage
        # Before v6.15 the write permission is in the type; after it, in the VMA.
        writable = st.device_exclusive_write != st.device_exclusive_read and stype == st.device_exclusive_write
        return leaf(EntryKind.DEVICE_EXCLUSIVE, pfn, writable)
    if stype == st.hwpoison:
        # make_hwpoison_entry(page) stores page_to_pfn(); hugetlb may poison PMD/PUD.
        return garbage if high else leaf(EntryKind.HWPOISON, pfn)
    if stype == st.pte_marker:
        # Markers are PTE-level, or hugetlb huge PTEs (uffd-wp, poison).
        known = 0
        for bit in layout.pte_markers.values():
            known |= bit
        if offset == 0 or offset & ~known:
            return garbage
        return leaf(EntryKind.MARKER)
    if stype == st.swapin_error:
        return leaf(EntryKind.SWAPIN_ERROR) if is_pte else garbage
    return garbage


def swap_type_name(stype: int, layout: Layout) -> str:
    """``swapfile``, ``migration_write``, ``device_exclusive``… or ``undefined``."""
    st = layout.swap
    if stype < st.max_swapfiles:
        return "swapfile"
    for name in (
        "hwpoison",
        "migration_read",
        "migration_read_exclusive",
        "migration_write",
        "device_write",
        "device_read",
        "device_exclusive_write",
        "device_exclusive_read",
        "pte_marker",
        "swapin_error",
    ):
        if getattr(st, name) == stype:
            if st.device_exclusive_write == st.device_exclusive_read and name.startswith("device_exclusive"):
                return "device_exclusive"
            return name
    return "undefined"
