# SPDX-License-Identifier: GPL-2.0-or-later
"""
x86-64 entries
--------------

Decode one raw ``pte_t``/``pmd_t``/``pud_t`` value of an x86-64 kernel, given
the :class:`~drgn_p2p.records.Layout` learned for it.

Bit layout: ``arch/x86/include/asm/pgtable_types.h`` (kernel-facts §1.1).
Swap format: ``arch/x86/include/asm/pgtable_64.h`` (kernel-facts §2.1)::

    | TYPE (59-63) | ~OFFSET (9-58) | 0 | 0 | X | X | X | E | F | SD | 0 |
                                      8   7   6   5   4   3   2   1    0

The offset is stored bit-inverted (L1TF mitigation), and so is the PFN of a
non-present, non-empty entry (PROT_NONE / NUMA hinting / invalidated PMD):
``protnone_mask()`` in ``arch/x86/include/asm/pgtable-invert.h``.

Plain ints throughout; no object per bit.
"""

from typing import List, Optional, Tuple

from ..records import LEVEL_SHIFT, EntryKind, Geometry, Layout, Leaf, Level
from .common import DECODER_API, mapped_leaf, swap_leaf, swap_type_name

__all__ = DECODER_API + ("cache_mode", "PAT_CACHE_MODES")

# _PAGE_BIT_* (pgtable_types.h)
_PRESENT = 1 << 0
_RW = 1 << 1
_USER = 1 << 2
_PWT = 1 << 3
_PCD = 1 << 4
_ACCESSED = 1 << 5
_DIRTY = 1 << 6
_PSE = 1 << 7  # PMD/PUD leaf; _PAGE_PAT on a 4K PTE
_GLOBAL = 1 << 8  # _PAGE_PROTNONE when _PAGE_PRESENT is clear
_PROTNONE = _GLOBAL
SPECIAL_BIT = 9  # _PAGE_BIT_SOFTW1 = _PAGE_BIT_SPECIAL
_SPECIAL = 1 << SPECIAL_BIT
_UFFD_WP = 1 << 10  # _PAGE_BIT_SOFTW2
_SOFT_DIRTY = 1 << 11  # _PAGE_BIT_SOFTW3
_PAT_LARGE = 1 << 12
_SAVED_DIRTY_BIT = 58  # _PAGE_BIT_SOFTW5 (v6.6+, [UNVERIFIED] release)
_PKEY_SHIFT = 59
_NX = 1 << 63

# Swap-entry flag bits, cleared by pte_swp_clear_flags() before decoding.
_SWP_SOFT_DIRTY = 1 << 1  # _PAGE_SWP_SOFT_DIRTY = _PAGE_RW
_SWP_UFFD_WP = 1 << 2  # _PAGE_SWP_UFFD_WP = _PAGE_USER
_SWP_EXCLUSIVE = 1 << 3  # _PAGE_SWP_EXCLUSIVE = _PAGE_PWT
_SWP_FLAGS = _SWP_SOFT_DIRTY | _SWP_UFFD_WP | _SWP_EXCLUSIVE
_SWP_TYPE_SHIFT = 59  # 64 - SWP_TYPE_BITS
_SWP_OFFSET_FIRST_BIT = 9  # _PAGE_BIT_PROTNONE + 1
_SWP_OFFSET_MASK = (1 << 50) - 1  # bits 9-58

#: Linux's PAT MSR programming, indexed by PAT:PCD:PWT (bit 2:1:0). From the
#: table in pat_bp_init() (arch/x86/mm/pat/memtype.c, unchanged 6.1 → 7.2):
#: slot 0 WB, 1 WC, 2 UC-, 3 UC, 4 WB (reserved), 5 WP, 6 UC- (reserved),
#: 7 WT. With PAT disabled (some hypervisors) the hardware default
#: (WB, WT, UC-, UC repeated) applies instead; this table assumes PAT is on.
PAT_CACHE_MODES = ("WB", "WC", "UC-", "UC", "WB", "WP", "UC-", "WT")

_HUGE_LEVELS = (Level.PMD, Level.PUD)


#: PFNs of the first MiB, which x86-64 reserves at boot ("x86/setup: Always
#: reserve the first 1M of RAM", v5.13; PageReserved): the only RAM /dev/mem
#: may map under STRICT_DEVMEM (devmem_is_allowed()), and RAM that
#: ioremap() maps (__ioremap_check_ram() refuses unreserved System RAM).
RESERVED_LOW_PFNS = 0x100


def _pfn_mask(level: Level, layout: Layout) -> int:
    """``PTE_PFN_MASK``, or ``PHYSICAL_PMD/PUD_PAGE_MASK`` for a PSE leaf."""
    mask = layout.pfn_mask & ~layout.sme_mask
    if level in _HUGE_LEVELS:
        mask &= ~((1 << LEVEL_SHIFT[level]) - 1)
    return mask


def decode_leaf(raw: int, va: int, level: Level, layout: Layout) -> Optional[Leaf]:
    """Decode the leaf entry *raw* mapping *va* at *level*; ``None`` when ``raw == 0``.

    Present-to-the-kernel follows ``pte_present()`` (``_PAGE_PRESENT |
    _PAGE_PROTNONE``) and ``pmd_present()`` (also ``_PAGE_PSE``, which covers
    an invalidated THP PMD). A present-to-the-kernel entry without
    ``_PAGE_PRESENT`` is :attr:`EntryKind.PROTNONE` and its PFN is
    un-inverted. ``special`` reports bit 9 whatever the level (the rules know
    where the kernel reads it); ``devmap`` reports ``layout.devmap_bit``.

    Callers give only leaves: a PMD/PUD with ``_PAGE_PRESENT`` set and
    ``_PAGE_PSE`` clear is a table (:func:`is_table`) and decodes as
    :attr:`EntryKind.GARBAGE` here. Never raises on any 64-bit value.
    """
    if raw == 0:
        return None
    huge = level in _HUGE_LEVELS
    if level > Level.PUD:
        # x86-64 has no P4D/PGD leaves (p4d_leaf() is 0); a present one is corrupt.
        return Leaf(va, level, raw, EntryKind.GARBAGE, None)

    if raw & _PRESENT:
        if huge and not raw & _PSE:
            return Leaf(va, level, raw, EntryKind.GARBAGE, None)
        kind = EntryKind.PRESENT
        pfn = (raw & _pfn_mask(level, layout)) >> layout.page_shift
    elif raw & _PROTNONE or (huge and raw & _PSE):
        if huge and not raw & _PSE:
            # pmd_present() but not pmd_leaf(): would be walked as a table.
            return Leaf(va, level, raw, EntryKind.GARBAGE, None)
        kind = EntryKind.PROTNONE
        pfn = (~raw & _pfn_mask(level, layout)) >> layout.page_shift
    else:
        return _decode_swap(raw, va, level, layout)

    return mapped_leaf(raw, va, level, kind, pfn, layout, special=bool(raw & _SPECIAL), writable=bool(raw & _RW))


def run_bits(layout: Layout, level: Level) -> Tuple[int, int, int]:
    """``(signature mask, present bit, PFN mask)`` for judging a stretch of
    leaves at *level* (PTE, PMD or PUD) whole.

    Two entries with ``_PAGE_PRESENT`` set that agree under the signature mask
    decode (:func:`decode_leaf`) to the same kind, special, devmap and
    writable (at PMD/PUD the signature holds ``_PAGE_PSE``: without it the
    entry is a table or garbage); their PFN is ``(raw & PFN mask) >>
    page_shift``, the mask leaving out a huge leaf's low bits (``_PAGE_PAT_LARGE``
    is bit 12). The PFN mask lies below bit 52. Used by :mod:`drgn_p2p.scan`.
    """
    signature = _PRESENT | _RW | _SPECIAL
    if level in _HUGE_LEVELS:
        signature |= _PSE
    if layout.devmap_bit is not None:
        signature |= 1 << layout.devmap_bit
    pfn_mask = _pfn_mask(level, layout)
    assert pfn_mask < 1 << 52, "PFN field above bit 51"
    return signature, _PRESENT, pfn_mask


def _decode_swap(raw: int, va: int, level: Level, layout: Layout) -> Leaf:
    """A non-present, non-empty, non-PROT_NONE entry: a swap-format entry.

    ``pte_to_swp_entry()`` = clear SOFT_DIRTY/UFFD_WP/EXCLUSIVE, then
    ``__swp_type`` = ``x >> 59`` and ``__swp_offset`` = ``(~x >> 9) & (2^50-1)``;
    PFN-carrying types hold ``offset & SWP_PFN_MASK`` (``include/linux/swapops.h``).
    """
    entry = raw & ~_SWP_FLAGS
    stype = entry >> _SWP_TYPE_SHIFT
    offset = (~entry >> _SWP_OFFSET_FIRST_BIT) & _SWP_OFFSET_MASK

    # Bit 7 is 0 in every swap entry (and _PAGE_PSE at PMD/PUD, handled as present).
    if raw & _PSE:
        return Leaf(va, level, raw, EntryKind.GARBAGE, None, swap_type=stype, swap_offset=offset)
    return swap_leaf(raw, va, level, layout, stype, offset)


def is_table(raw: int, level: Level) -> bool:
    """Whether *raw* points to a lower-level table (the walker descends).

    PTEs never do; a PMD/PUD does when ``_PAGE_PRESENT`` is set and
    ``_PAGE_PSE`` is clear; P4D/PGD entries when present (PSE is reserved
    there and such an entry is reported as a garbage leaf instead).
    """
    if level == Level.PTE or not raw & _PRESENT:
        return False
    return not raw & _PSE


def geometry(levels: int, pfn_mask: int) -> Geometry:
    """4 KiB tables of 512 entries; 48-bit VA with 4 levels, 57-bit with 5
    (LA57). A table entry is present without ``_PAGE_PSE``; its address is
    ``raw & PTE_PFN_MASK`` (*pfn_mask*, with the SME bit already cleared)."""
    return Geometry.build(page_shift=12, va_bits=57 if levels == 5 else 48, table_mask=_PRESENT | _PSE,
                          table_bits=_PRESENT, addr_mask=pfn_mask)


def table_phys(raw: int, layout: Layout) -> int:
    """Physical address of the table a table entry points to (never inverted)."""
    return raw & layout.pfn_mask & ~layout.sme_mask


def cache_mode(raw: int, level: Level) -> str:
    """Memory type of a present entry from its PAT:PCD:PWT index (Linux's PAT)."""
    pat_bit = _PAT_LARGE if (level in _HUGE_LEVELS and raw & _PSE) else _PSE if level == Level.PTE else 0
    index = (4 if raw & pat_bit else 0) | (2 if raw & _PCD else 0) | (1 if raw & _PWT else 0)
    return PAT_CACHE_MODES[index]


def describe(raw: int, level: Level, layout: Layout) -> Tuple[List[str], str]:
    """Name every set bit of *raw*; return ``(names, cache mode)``.

    Present and PROT_NONE entries: PRESENT, RW, USER, PWT, PCD, PAT (bit 7 on
    a PTE, bit 12 on a PMD/PUD leaf), PSE, ACCESSED, DIRTY, GLOBAL or
    PROTNONE, SPECIAL, UFFD_WP, SOFT_DIRTY, DEVMAP, SAVED_DIRTY, PKEY=n, NX,
    ENC (SME C-bit), ``RSVDn`` for bits inside a huge leaf's alignment and
    ``BITn`` for a set software bit with no owner on this kernel. The cache
    mode is empty for swap-format entries, which are named ``TYPE=n(kind)``,
    ``OFFSET=0x…`` and SWP_SOFT_DIRTY / SWP_UFFD_WP / SWP_EXCLUSIVE.
    """
    if raw == 0:
        return [], ""
    huge = level in _HUGE_LEVELS
    pse = bool(raw & _PSE) and level != Level.PTE
    if not raw & (_PRESENT | _PROTNONE) and not (huge and pse):
        return _describe_swap(raw, layout), ""

    names: List[str] = []
    add = names.append
    if raw & _PRESENT:
        add("PRESENT")
    if raw & _RW:
        add("RW")
    if raw & _USER:
        add("USER")
    if raw & _PWT:
        add("PWT")
    if raw & _PCD:
        add("PCD")
    if raw & _ACCESSED:
        add("ACCESSED")
    if raw & _DIRTY:
        add("DIRTY")
    if raw & _PSE:
        add("PAT" if level == Level.PTE else "PSE")
    if raw & _GLOBAL:
        add("GLOBAL" if raw & _PRESENT else "PROTNONE")
    if raw & _SPECIAL:
        add("SPECIAL")
    if raw & _UFFD_WP:
        add("UFFD_WP")
    if raw & _SOFT_DIRTY:
        add("SOFT_DIRTY")
    leaf = pse and huge
    if leaf and raw & _PAT_LARGE:
        add("PAT")
    if leaf:
        for bit in range(13, LEVEL_SHIFT[level]):
            if raw >> bit & 1:
                add(f"RSVD{bit}")
    if raw & layout.sme_mask:
        add("ENC")
    for bit in range(52, 59):
        if not raw >> bit & 1 or (1 << bit) & layout.pfn_mask:
            continue
        if bit == layout.devmap_bit:
            add("DEVMAP")
        elif bit == _SAVED_DIRTY_BIT:
            add("SAVED_DIRTY")
        else:
            add(f"BIT{bit}")
    pkey = (raw >> _PKEY_SHIFT) & 0xF
    if pkey:
        add(f"PKEY={pkey}")
    if raw & _NX:
        add("NX")
    return names, cache_mode(raw, level)


def _describe_swap(raw: int, layout: Layout) -> List[str]:
    entry = raw & ~_SWP_FLAGS
    stype = entry >> _SWP_TYPE_SHIFT
    offset = (~entry >> _SWP_OFFSET_FIRST_BIT) & _SWP_OFFSET_MASK
    names = [f"TYPE={stype}({swap_type_name(stype, layout)})", f"OFFSET={offset:#x}"]
    if raw & _SWP_SOFT_DIRTY:
        names.append("SWP_SOFT_DIRTY")
    if raw & _SWP_UFFD_WP:
        names.append("SWP_UFFD_WP")
    if raw & _SWP_EXCLUSIVE:
        names.append("SWP_EXCLUSIVE")
    for bit in range(4, 8):
        if raw >> bit & 1:
            names.append(f"BIT{bit}")
    return names
