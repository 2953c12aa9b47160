# SPDX-License-Identifier: GPL-2.0-or-later
"""
arm64 entries
-------------

Decode one raw ``pte_t``/``pmd_t``/``pud_t`` value of an arm64 kernel, given
the :class:`~drgn_p2p.records.Layout` learned for it (its granule, paging
levels, LPA2 and the version-dependent bits in ``layout.arm64``).

Descriptor bits: ``arch/arm64/include/asm/pgtable-hwdef.h`` (hardware) and
``pgtable-prot.h`` (software); the helpers that read them:
``arch/arm64/include/asm/pgtable.h`` (arm64-facts §1)::

    63 | 62-60 | 59 | 58 | 57 | 56 | 55 | 54 | 53 | 52 | 51 | 50 | 49-12 | 11 | 10 | 9-8 | 7 | 6 | 4-2 | 1 | 0
       | POIdx |    |UFFD|DEVM|SPEC|DIRT|UXN |PXN |CONT|WRITE GP | addr  | nG | AF | SH  |RDO|USR|AttrI|TYP|VALID
                                                    (DBM)                         (PA[51:50] with LPA2)

Bits [1:0]: ``0b11`` a table above the last level and a page at it; ``0b01``
a block (PMD, and PUD with 4K pages) and reserved at the last level; VALID
clear: not mapped for the CPU. Linux keeps a *present* entry with VALID clear
(PROT_NONE, NUMA hinting, a THP being split): ``PTE_PRESENT_INVALID`` = bit 11
(v6.10+), ``PTE_PROT_NONE`` = bit 58 and ``PMD_PRESENT_INVALID`` = bit 59
before. Everything else non-zero with VALID clear is a swap entry (§5)::

    v6.10+: | 0 0 | OFFSET (12-61) | 0 (11) | TYPE (6-10) | 0 0 | UFFD_WP (3) | EXCLUSIVE (2) | 0 0 |
    v6.1:   | 0 (58) | OFFSET (8-57) | TYPE (3-7) | EXCLUSIVE (2) | 0 0 |

The offset is not inverted (unlike x86-64). Plain ints throughout.
"""

from typing import List, Optional, Tuple

from ..records import EntryKind, Geometry, Layout, Leaf, Level, level_shift
from .common import DECODER_API, mapped_leaf, swap_leaf, swap_type_name

__all__ = DECODER_API + ("memory_type", "MAIR_TYPES")

# pgtable-hwdef.h (7.2.8:hwdef:164-176; same bits in 6.1 and 6.12)
_VALID = 1 << 0
_TYPE_MASK = 3  # PTE_TYPE_MASK / PMD_TYPE_MASK
_TYPE_TABLE = 3  # PMD_TYPE_TABLE; PTE_TYPE_PAGE at the last level
_TYPE_BLOCK = 1  # PMD_TYPE_SECT
_ATTRINDX_SHIFT = 2  # PTE_ATTRINDX(t) = t << 2, 3 bits
_NS = 1 << 5  # never set by Linux
_USER = 1 << 6  # AP[1]
_RDONLY = 1 << 7  # AP[2]
_SH_SHIFT = 8  # SH[1:0]; PA[51:50] with LPA2
_AF = 1 << 10
_NG = 1 << 11
_GP = 1 << 50  # BTI guarded
_WRITE = 1 << 51  # PTE_DBM = PTE_WRITE (pgtable-prot.h:16)
_CONT = 1 << 52
_PXN = 1 << 53
_UXN = 1 << 54
# pgtable-prot.h software bits (7.2.8:prot:16-32)
_DIRTY = 1 << 55
SPECIAL_BIT = 56
_SPECIAL = 1 << SPECIAL_BIT
_PO_SHIFT = 60  # POIndex[2:0], bits 60-62 (v6.12, b66db4f3ccde)
# Table descriptors (7.2.8:hwdef:107-153): PXNTable, UXNTable, APTable[1:0], NSTable.
_TABLE_ATTRS = ((59, "PXN_TABLE"), (60, "UXN_TABLE"), (61, "AP_TABLE0"), (62, "AP_TABLE1"), (63, "NS_TABLE"))
_TABLE_AF = 1 << 10  # PXD_TABLE_AF (7.x, FEAT_HAFT; ignored without it)
# Swap-only bits
_SWP_EXCLUSIVE = 1 << 2  # PTE_SWP_EXCLUSIVE (all three trees, prot:17)
_SWP_TYPE_MASK = 31  # __SWP_TYPE_BITS 5
_SWP_OFFSET_MASK = (1 << 50) - 1  # __SWP_OFFSET_BITS 50

#: MAIR_EL1 slots Linux programs (``MT_*`` in arch/arm64/include/asm/memory.h,
#: MAIR_EL1_SET in arch/arm64/mm/proc.S; identical in 6.1, 6.12 and 7.2):
#: 0 MT_NORMAL (0xff, write-back), 1 MT_NORMAL_TAGGED (0xff, 0xf0 once MTE is
#: on), 2 MT_NORMAL_NC (0x44), 3 MT_DEVICE_nGnRnE (0x00), 4 MT_DEVICE_nGnRE
#: (0x04); 5-7 unused.
MAIR_TYPES = ("Normal", "Normal-Tagged", "Normal-NC", "Device-nGnRnE", "Device-nGnRE", "AttrIndx5", "AttrIndx6",
              "AttrIndx7")

_HUGE_LEVELS = (Level.PMD, Level.PUD)


def geometry(page_shift: int, va_bits: int, lpa2: bool, pa52_64k: bool, addr_top: int) -> Geometry:
    """Tables of ``2**page_shift`` bytes translating *va_bits* (``vabits_actual``).

    A table entry has bits [1:0] = 0b11. The output address is ``PTE_ADDR_LOW``
    = bits [*addr_top*-1:PAGE_SHIFT] (*addr_top* 50 from v6.9, 48 before),
    plus, with 52-bit PA, ``PTE_ADDR_HIGH``: bits 9:8 << 42 when LPA2 is in
    use (*lpa2*), bits 15:12 << 36 with 64K pages (*pa52_64k*)
    (``__pte_to_phys()``, 7.2.8:pgtable.h:113-123; hwdef:179-188).
    """
    addr_mask = ((1 << addr_top) - 1) & ~((1 << page_shift) - 1)
    high_mask, high_shift = (0x3 << 8, 42) if lpa2 else (0xF << 12, 36) if pa52_64k else (0, 0)
    return Geometry.build(page_shift=page_shift, va_bits=va_bits, table_mask=_TYPE_MASK, table_bits=_TYPE_TABLE,
                          addr_mask=addr_mask, addr_high_mask=high_mask, addr_high_shift=high_shift)


def is_table(raw: int, level: Level) -> bool:
    """Whether *raw* points at a next-level table: bits [1:0] = 0b11 above the PTE level."""
    return level != Level.PTE and raw & _TYPE_MASK == _TYPE_TABLE


def table_phys(raw: int, layout: Layout) -> int:
    """Physical address of the table a table entry points to (``pmd_page_paddr()`` = ``__pmd_to_phys()``)."""
    return layout.geometry.address(raw)


def _pfn(raw: int, level: Level, layout: Layout) -> int:
    """``pte_pfn()``; ``pmd_pfn()``/``pud_pfn()`` also clear the block's alignment bits."""
    phys = layout.geometry.address(raw)
    if level in _HUGE_LEVELS:
        phys &= ~((1 << level_shift(level, layout.page_shift)) - 1)
    return phys >> layout.page_shift


def _present_invalid(raw: int, level: Level, layout: Layout) -> bool:
    """VALID clear but ``pte_present()``/``pmd_present()`` (arm64-facts §1.3, §5.2)."""
    bits = layout.arm64
    assert bits is not None
    if bits.present_invalid_bit is not None:
        # b28c74e25967/55564814a838 (v6.10): one PTE_PRESENT_INVALID for all levels.
        return bool(raw >> bits.present_invalid_bit & 1)
    if bits.prot_none_bit is not None and raw >> bits.prot_none_bit & 1:
        return True
    # 6.1 pmd_present(): pte_present() || PMD_PRESENT_INVALID (pmdp_invalidate()).
    return (level != Level.PTE and bits.pmd_present_invalid_bit is not None
            and bool(raw >> bits.pmd_present_invalid_bit & 1))


def decode_leaf(raw: int, va: int, level: Level, layout: Layout) -> Optional[Leaf]:
    """Decode the leaf entry *raw* mapping *va* at *level*; ``None`` when ``raw == 0``.

    VALID set: a page (PTE, bits [1:0] = 0b11) or a block (PMD/PUD, 0b01) is
    :attr:`EntryKind.PRESENT`; the reserved 0b01 at the PTE level, a block at
    P4D/PGD level, and a table (0b11 above the PTE level, which callers never
    pass) are :attr:`EntryKind.GARBAGE`. VALID clear but present to the kernel
    is :attr:`EntryKind.PROTNONE`, with the PFN decoded as for a valid entry
    (nothing is inverted on arm64). Anything else is a swap-format entry.
    ``special`` is bit 56 at any level (the rules know where the kernel reads
    it), ``devmap`` is ``layout.devmap_bit``, ``writable`` is ``PTE_WRITE``
    (bit 51). Never raises on any 64-bit value.
    """
    if raw == 0:
        return None
    page_shift = layout.page_shift
    if raw & _VALID:
        kind = raw & _TYPE_MASK
        if (level == Level.PTE and kind != _TYPE_TABLE) or (level != Level.PTE and kind != _TYPE_BLOCK) \
                or level > Level.PUD:
            return Leaf(va, level, raw, EntryKind.GARBAGE, None, page_shift=page_shift)
        entry_kind = EntryKind.PRESENT
    elif _present_invalid(raw, level, layout):
        if level > Level.PUD:
            return Leaf(va, level, raw, EntryKind.GARBAGE, None, page_shift=page_shift)
        entry_kind = EntryKind.PROTNONE
    else:
        return _decode_swap(raw, va, level, layout)
    return mapped_leaf(raw, va, level, entry_kind, _pfn(raw, level, layout), layout,
                       special=bool(raw & _SPECIAL), writable=bool(raw & _WRITE))


def _swap_fields(raw: int, layout: Layout) -> Tuple[int, int, int]:
    """``(type, offset, stray bits)`` of a swap entry: ``__swp_type``/``__swp_offset``
    after ``pte_swp_clear_flags()``; stray bits are set bits no field owns."""
    bits = layout.arm64
    assert bits is not None
    tshift, oshift = bits.swp_type_shift, bits.swp_offset_shift
    stype = (raw >> tshift) & _SWP_TYPE_MASK
    offset = (raw >> oshift) & _SWP_OFFSET_MASK
    owned = _SWP_EXCLUSIVE | (_SWP_TYPE_MASK << tshift) | (_SWP_OFFSET_MASK << oshift)
    if bits.swp_uffd_wp_bit is not None:
        owned |= 1 << bits.swp_uffd_wp_bit
    return stype, offset, raw & ~owned


def _decode_swap(raw: int, va: int, level: Level, layout: Layout) -> Leaf:
    """A non-zero entry with VALID clear that is not present-invalid.

    Bits [1:0], the present-invalid/PROT_NONE bit and everything outside the
    type, offset, EXCLUSIVE and UFFD_WP fields are zero in every swap entry
    (6.12.107:pgtable.h:1424-1441; 7.2.8:1515-1532; 6.1.176:1000-1016); an
    entry with any of them set is :attr:`EntryKind.GARBAGE`.
    """
    stype, offset, stray = _swap_fields(raw, layout)
    if stray:
        return Leaf(va, level, raw, EntryKind.GARBAGE, None, swap_type=stype, swap_offset=offset,
                    page_shift=layout.page_shift)
    return swap_leaf(raw, va, level, layout, stype, offset)


def memory_type(raw: int, layout: Layout) -> str:
    """The memory type AttrIndx (bits 4:2) selects in Linux's MAIR_EL1."""
    bits = layout.arm64
    mair = bits.mair if bits is not None else MAIR_TYPES
    return mair[(raw >> _ATTRINDX_SHIFT) & 7]


def run_bits(layout: Layout, level: Level) -> Tuple[int, int, int]:
    """``(signature mask, present bit, PFN mask)`` for judging a stretch of
    leaves at *level* (PTE, PMD or PUD) whole.

    Two entries with VALID set that agree under the signature mask decode
    (:func:`decode_leaf`) to the same kind, special, devmap and writable; the
    signature holds the type bits (page or block), WRITE, SPECIAL, DEVMAP and
    the high PA bits (LPA2 bits 9:8, 64K bits 15:12), so a run shares them.
    The PFN mask is ``PTE_ADDR_LOW`` (less a block's alignment bits, which
    ``pmd_pfn()`` clears), below bit 50; :mod:`drgn_p2p.scan` checks the first
    entry's PFN against :func:`decode_leaf`, so a run whose high PA bits are
    not zero is left to the entry-by-entry path.
    """
    geometry = layout.geometry
    signature = _TYPE_MASK | _WRITE | _SPECIAL | geometry.addr_high_mask
    if layout.devmap_bit is not None:
        signature |= 1 << layout.devmap_bit
    pfn_mask = geometry.addr_mask
    if level in _HUGE_LEVELS:
        pfn_mask &= ~((1 << level_shift(level, layout.page_shift)) - 1)
    assert pfn_mask < 1 << 52, "PFN field above bit 51"
    return signature, _VALID, pfn_mask


def describe(raw: int, level: Level, layout: Layout) -> Tuple[List[str], str]:
    """Name every set bit of *raw*; return ``(names, memory type)``.

    Table entries: TABLE, PXN_TABLE, UXN_TABLE, AP_TABLE0/1, NS_TABLE, AF
    (FEAT_HAFT). Leaves, valid or present-invalid: VALID, PAGE/BLOCK (or
    RESERVED), ATTRINDX=n, NS, USER, RDONLY, SH=n (``PA[51:50]=n`` with LPA2),
    AF, NG or PRESENT_INVALID (plus PROT_NONE when ``pte_protnone()`` holds),
    GP, WRITE (DBM), CONT, PXN, UXN, DIRTY, SPECIAL, DEVMAP, UFFD_WP, PROT_NONE
    / PRESENT_INVALID_PMD (before v6.10), PO_IDX=n, ``RSVDn`` for address bits
    inside a block's alignment and ``BITn`` for a set bit this kernel gives no
    meaning. The memory type is empty for swap entries, named ``TYPE=n(kind)``,
    ``OFFSET=0x…``, SWP_EXCLUSIVE and SWP_UFFD_WP.
    """
    if raw == 0:
        return [], ""
    bits = layout.arm64
    assert bits is not None
    names: List[str] = []
    add = names.append
    if level != Level.PTE and raw & _TYPE_MASK == _TYPE_TABLE:
        add("TABLE")
        if raw & _TABLE_AF:
            add("AF")
        for bit, name in _TABLE_ATTRS:
            if raw >> bit & 1:
                add(name)
        return names, ""
    valid = bool(raw & _VALID)
    if not valid and not _present_invalid(raw, level, layout):
        return _describe_swap(raw, layout), ""

    kind = raw & _TYPE_MASK
    if valid:
        add("VALID")
    if level == Level.PTE:
        add("PAGE" if kind & 2 else "RESERVED" if valid else "")
    else:
        add("BLOCK" if not kind & 2 else "")
    if not names[-1]:
        names.pop()
    add(f"ATTRINDX={(raw >> _ATTRINDX_SHIFT) & 7}")
    sh = (raw >> _SH_SHIFT) & 3
    for mask, name in ((_NS, "NS"), (_USER, "USER"), (_RDONLY, "RDONLY")):
        if raw & mask:
            add(name)
    if sh:
        add(f"PA[51:50]={sh}" if bits.lpa2 else f"SH={sh}")
    if raw & _AF:
        add("AF")
    if raw & _NG:
        if valid or bits.present_invalid_bit is None:
            add("NG")
        else:
            add("PRESENT_INVALID")
            if not raw & _USER and raw & _UXN:
                add("PROT_NONE")  # pte_protnone(), v6.10+
    if level in _HUGE_LEVELS and not kind & 2:
        for bit in range(layout.page_shift, level_shift(level, layout.page_shift)):
            if raw >> bit & 1 and (1 << bit) & layout.geometry.addr_mask:
                add(f"RSVD{bit}")
    for mask, name in ((_GP, "GP"), (_WRITE, "WRITE"), (_CONT, "CONT"), (_PXN, "PXN"), (_UXN, "UXN"),
                       (_DIRTY, "DIRTY"), (_SPECIAL, "SPECIAL")):
        if raw & mask:
            add(name)
    for bit in range(57, 60):
        if not raw >> bit & 1:
            continue
        if bit == layout.devmap_bit:
            add("DEVMAP")
        elif bit == bits.uffd_wp_bit:
            add("UFFD_WP")
        elif bit == bits.prot_none_bit and not valid:
            add("PROT_NONE")
        elif bit == bits.pmd_present_invalid_bit and not valid and level != Level.PTE:
            add("PRESENT_INVALID_PMD")
        else:
            add(f"BIT{bit}")
    po = (raw >> _PO_SHIFT) & 7
    if po:
        add(f"PO_IDX={po}")
    if raw >> 63:
        add("BIT63")
    return names, memory_type(raw, layout)


def _describe_swap(raw: int, layout: Layout) -> List[str]:
    bits = layout.arm64
    assert bits is not None
    stype, offset, stray = _swap_fields(raw, layout)
    names = [f"TYPE={stype}({swap_type_name(stype, layout)})", f"OFFSET={offset:#x}"]
    if raw & _SWP_EXCLUSIVE:
        names.append("SWP_EXCLUSIVE")
    if bits.swp_uffd_wp_bit is not None and raw >> bits.swp_uffd_wp_bit & 1:
        names.append("SWP_UFFD_WP")
    names.extend(f"BIT{bit}" for bit in range(64) if stray >> bit & 1)
    return names
