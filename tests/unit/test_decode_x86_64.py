# SPDX-License-Identifier: GPL-2.0-or-later
"""x86-64 entry decoding. Expected values come from the lab's raw leaves
(qemu-lab.md §7 and §9) and from the kernel headers' formulas, re-derived here:
``__swp_entry(t, o) = (~o << 14 >> 5) | (t << 59)`` on a 64-bit value
(arch/x86/include/asm/pgtable_64.h) and ``pte_pfn()``'s PROT_NONE inversion."""

import dataclasses
import random

import pytest

from drgn_p2p import arch
from drgn_p2p.arch import x86_64 as X
from drgn_p2p.records import EntryKind, Level

from .layouts import L61, L61_DP, L72, L72_4LVL, L612, L612_DP, PFN_MASK, make_layout

M64 = (1 << 64) - 1
VA = 0x7F12_3400_0000


def swp(stype: int, offset: int, flags: int = 0) -> int:
    """``__swp_entry()`` + the flag bits (1 soft-dirty, 2 uffd-wp, 3 exclusive)."""
    return ((((~offset) << 14) & M64) >> 5) | (stype << 59) | flags


def protnone(pfn: int, flags: int, level: Level = Level.PTE) -> int:
    """``pfn_pte(pfn, prot)`` for a non-present prot: the PFN is stored inverted."""
    mask = PFN_MASK & ~((1 << {Level.PTE: 12, Level.PMD: 21, Level.PUD: 30}[level]) - 1)
    return ((~(pfn << 12)) & mask) | flags


# --- present leaves from the lab --------------------------------------------

LAB = [
    # raw, level, layout, pfn, special, devmap, writable, names, cache
    (0x84000000415CBA67, Level.PTE, L61, 0x415CB, True, True, True,
     ["PRESENT", "RW", "USER", "ACCESSED", "DIRTY", "SPECIAL", "SOFT_DIRTY", "DEVMAP", "NX"], "WB"),
    (0x82000000415CBA67, Level.PTE, L612, 0x415CB, True, True, True,
     ["PRESENT", "RW", "USER", "ACCESSED", "DIRTY", "SPECIAL", "SOFT_DIRTY", "DEVMAP", "NX"], "WB"),
    (0x80000000415CB867, Level.PTE, L72, 0x415CB, False, False, True,
     ["PRESENT", "RW", "USER", "ACCESSED", "DIRTY", "SOFT_DIRTY", "NX"], "WB"),
    (0x8000000184000277, Level.PTE, L72, 0x184000, True, False, True,
     ["PRESENT", "RW", "USER", "PCD", "ACCESSED", "DIRTY", "SPECIAL", "NX"], "UC-"),
    (0x80000001400002F7, Level.PUD, L72, 0x140000, True, False, True,
     ["PRESENT", "RW", "USER", "PCD", "ACCESSED", "DIRTY", "PSE", "SPECIAL", "NX"], "UC-"),
    (0x80000000606008E7, Level.PMD, L72, 0x60600, False, False, True,
     ["PRESENT", "RW", "USER", "ACCESSED", "DIRTY", "PSE", "SOFT_DIRTY", "NX"], "WB"),
    (0x82000001004008E7, Level.PMD, L612, 0x100400, False, True, True,
     ["PRESENT", "RW", "USER", "ACCESSED", "DIRTY", "PSE", "SOFT_DIRTY", "DEVMAP", "NX"], "WB"),
    (0x8000000180020067, Level.PTE, L72, 0x180020, False, False, True,
     ["PRESENT", "RW", "USER", "ACCESSED", "DIRTY", "NX"], "WB"),
    (0x800000002E731225, Level.PTE, L612, 0x2E731, True, False, False,
     ["PRESENT", "USER", "ACCESSED", "SPECIAL", "NX"], "WB"),
    (0x80000000FD000277, Level.PTE, L612, 0xFD000, True, False, True,
     ["PRESENT", "RW", "USER", "PCD", "ACCESSED", "DIRTY", "SPECIAL", "NX"], "UC-"),
]


@pytest.mark.parametrize("raw,level,layout,pfn,special,devmap,writable,names,cache", LAB)
def test_lab_present_leaves(raw, level, layout, pfn, special, devmap, writable, names, cache):
    leaf = X.decode_leaf(raw, VA, level, layout)
    assert leaf.kind is EntryKind.PRESENT
    assert (leaf.pfn, leaf.special, leaf.devmap, leaf.writable) == (pfn, special, devmap, writable)
    assert (leaf.va, leaf.level, leaf.raw) == (VA, level, raw)
    assert leaf.swap_type is None
    assert X.describe(raw, level, layout) == (names, cache)


def test_devmap_bit_depends_on_layout():
    # 6.1's devmap bit 58 is SAVED_DIRTY from 6.6 on; 6.12's bit 57 has no owner in 7.2.
    assert not X.decode_leaf(0x84000000415CBA67, VA, Level.PTE, L612).devmap
    assert "SAVED_DIRTY" in X.describe(0x84000000415CBA67, Level.PTE, L612)[0]
    assert not X.decode_leaf(0x82000000415CBA67, VA, Level.PTE, L72).devmap
    assert "BIT57" in X.describe(0x82000000415CBA67, Level.PTE, L72)[0]


def test_empty_entry_is_none():
    for level in (Level.PTE, Level.PMD, Level.PUD):
        assert X.decode_leaf(0, VA, level, L72) is None
        assert X.describe(0, level, L72) == ([], "")


def test_arch_dispatch():
    raw = 0x8000000184000277
    assert arch.decode_leaf(raw, VA, Level.PTE, L72) == X.decode_leaf(raw, VA, Level.PTE, L72)
    assert arch.special_bit(L72) == 9
    with pytest.raises(KeyError, match="riscv64"):
        arch.for_layout(dataclasses.replace(L72, arch="riscv64"))


# --- PFN masks ---------------------------------------------------------------


def test_pmd_pfn_masks_pat_large_and_reserved_bits():
    # 2M leaf at 0x60600000 with _PAGE_PAT_LARGE (bit 12) and a stray bit 13.
    raw = 0x8000000060600000 | 1 << 13 | 1 << 12 | 0xE7
    leaf = X.decode_leaf(raw, VA, Level.PMD, L72)
    assert leaf.pfn == 0x60600
    names, cache = X.describe(raw, Level.PMD, L72)
    assert "PAT" in names and "RSVD13" in names and "PSE" in names
    assert cache == "WB"  # PAT=1 PCD=0 PWT=0 → slot 4 (WB)
    # The same bit pattern is PFN at PTE level.
    assert X.decode_leaf(raw & ~0x80, VA, Level.PTE, L72).pfn == 0x60603


def test_pud_pfn_is_1g_aligned():
    raw = 0x80000001400002F7 | 0x1234 << 12
    assert X.decode_leaf(raw, VA, Level.PUD, L72).pfn == 0x140000


@pytest.mark.parametrize(
    "flags,level,mode",
    [
        (0, Level.PTE, "WB"),
        (1 << 3, Level.PTE, "WC"),  # PWT
        (1 << 4, Level.PTE, "UC-"),  # PCD
        (1 << 4 | 1 << 3, Level.PTE, "UC"),
        (1 << 7 | 1 << 3, Level.PTE, "WP"),  # PAT|PWT
        (1 << 7 | 1 << 4, Level.PTE, "UC-"),
        (1 << 7 | 1 << 4 | 1 << 3, Level.PTE, "WT"),
        (1 << 12 | 1 << 3 | 1 << 7, Level.PMD, "WP"),  # PAT_LARGE|PWT on a PSE leaf
        (1 << 7 | 1 << 3, Level.PMD, "WC"),  # bit 7 is PSE at PMD, not PAT
    ],
)
def test_cache_mode_from_linux_pat(flags, level, mode):
    assert X.describe(0x1000 << 9 | 1 | flags, level, L72)[1] == mode


def test_sme_bit_is_stripped():
    sme = 1 << 47
    layout = make_layout((6, 12), sme_mask=sme)
    raw = 0x8000000000000067 | sme | 0x1234 << 12
    assert X.decode_leaf(raw, VA, Level.PTE, layout).pfn == 0x1234
    assert "ENC" in X.describe(raw, Level.PTE, layout)[0]
    assert X.table_phys(raw, layout) == 0x1234000


def test_pkey_and_nx():
    raw = 0x8000000000001067 | 5 << 59
    names, _ = X.describe(raw, Level.PTE, L72)
    assert "PKEY=5" in names and names[-1] == "NX"


# --- PROT_NONE ---------------------------------------------------------------


def test_protnone_pte_pfn_is_uninverted():
    raw = protnone(0x1234, 1 << 8 | 0x64)  # PROTNONE|USER|ACCESSED|DIRTY
    leaf = X.decode_leaf(raw, VA, Level.PTE, L72)
    assert leaf.kind is EntryKind.PROTNONE and leaf.pfn == 0x1234 and not leaf.writable
    assert leaf.kind.maps_memory
    assert "PROTNONE" in X.describe(raw, Level.PTE, L72)[0]


def test_protnone_and_invalidated_pmd():
    numa = protnone(0x60600, 1 << 8 | 1 << 7 | 0x67 & ~1, Level.PMD)
    leaf = X.decode_leaf(numa, VA, Level.PMD, L72)
    assert (leaf.kind, leaf.pfn, leaf.writable) == (EntryKind.PROTNONE, 0x60600, True)
    # pmd_mkinvalid(): P and PROTNONE cleared, PSE kept → still pmd_present().
    inval = protnone(0x60600, 1 << 7 | 1 << 9, Level.PMD)
    leaf = X.decode_leaf(inval, VA, Level.PMD, L72)
    assert (leaf.kind, leaf.pfn, leaf.special) == (EntryKind.PROTNONE, 0x60600, True)


def test_protnone_special_devmap_bits_kept():
    raw = protnone(0x415CB, 1 << 8 | 1 << 9 | 1 << 58 | 0x64)
    leaf = X.decode_leaf(raw, VA, Level.PTE, L61)
    assert leaf.kind is EntryKind.PROTNONE and leaf.special and leaf.devmap and leaf.pfn == 0x415CB


# --- tables ------------------------------------------------------------------


def test_is_table_and_table_phys():
    table = 0x0000000012345067
    assert X.is_table(table, Level.PMD) and X.is_table(table, Level.PUD) and X.is_table(table, Level.P4D)
    assert not X.is_table(table, Level.PTE)
    assert not X.is_table(table | 0x80, Level.PMD)  # PSE leaf
    assert not X.is_table(table & ~1, Level.PMD)  # not present
    assert not X.is_table(table | 0x80, Level.P4D)  # PSE reserved at P4D
    assert X.table_phys(table | 1 << 63, L72) == 0x12345000
    # A table entry handed to decode_leaf is not a leaf.
    assert X.decode_leaf(table, VA, Level.PMD, L72).kind is EntryKind.GARBAGE
    assert X.decode_leaf(table | 0x80, VA, Level.P4D, L72).kind is EntryKind.GARBAGE


# --- swap-format entries -------------------------------------------------------


def test_swp_helper_matches_lab_hmm_entries():
    assert swp(28, 0xFCDFE00, 1 << 1) == 0xE7FFFFE06403FE02
    assert swp(28, 0xFCFFFFF, 1 << 1) == 0xE7FFFFE060000002


@pytest.mark.parametrize(
    "raw,level,pfn", [(0xE7FFFFE06403FE02, Level.PMD, 0xFCDFE00), (0xE7FFFFE060000002, Level.PTE, 0xFCFFFFF)]
)
def test_lab_hmm_device_private(raw, level, pfn):
    # 7.2, DEVICE_PRIVATE=y: MAX_SWAPFILES 24, SWP_DEVICE_WRITE = 24+1+3 = 28.
    leaf = X.decode_leaf(raw, VA, level, L72)
    assert (leaf.kind, leaf.pfn, leaf.writable, leaf.swap_type) == (EntryKind.DEVICE_PRIVATE, pfn, True, 28)
    assert leaf.swap_offset == pfn
    names, cache = X.describe(raw, level, L72)
    assert names == ["TYPE=28(device_write)", f"OFFSET={pfn:#x}", "SWP_SOFT_DIRTY"] and cache == ""


def test_same_type_means_other_things_on_other_kernels():
    raw = 0xE7FFFFE060000002  # type 28
    assert X.decode_leaf(raw, VA, Level.PTE, L612).kind is EntryKind.MIGRATION  # 6.12: MIGRATION_READ
    leaf = X.decode_leaf(raw, VA, Level.PTE, L61)  # 6.1: MIGRATION_READ_EXCLUSIVE
    assert leaf.kind is EntryKind.MIGRATION and not leaf.writable
    assert X.decode_leaf(raw, VA, Level.PTE, L61_DP).kind is EntryKind.DEVICE_EXCLUSIVE  # 6.1 DP: EXCL_WRITE


def test_plain_swap():
    raw = swp(0, 0x1234, 1 << 3 | 1 << 1)  # exclusive + soft-dirty
    leaf = X.decode_leaf(raw, VA, Level.PTE, L72)
    assert (leaf.kind, leaf.pfn, leaf.swap_type, leaf.swap_offset) == (EntryKind.SWAP, None, 0, 0x1234)
    assert X.describe(raw, Level.PTE, L72)[0] == ["TYPE=0(swapfile)", "OFFSET=0x1234", "SWP_SOFT_DIRTY", "SWP_EXCLUSIVE"]
    assert X.decode_leaf(swp(23, 5), VA, Level.PTE, L72).kind is EntryKind.SWAP  # last swapfile type on 7.2
    # THP/hugetlb never swap out as a huge entry.
    assert X.decode_leaf(raw, VA, Level.PMD, L72).kind is EntryKind.GARBAGE


def test_migration_entries():
    # 7.2: MIGRATION_READ 25, READ_EXCLUSIVE 26, WRITE 27; SWP_PFN_BITS = 52-12 = 40.
    young_dirty = 0b11 << 40
    leaf = X.decode_leaf(swp(27, 0x4242 | young_dirty), VA, Level.PTE, L72)
    assert (leaf.kind, leaf.pfn, leaf.writable) == (EntryKind.MIGRATION, 0x4242, True)
    assert not X.decode_leaf(swp(25, 0x4242), VA, Level.PMD, L72).writable
    assert X.decode_leaf(swp(26, 0x4242), VA, Level.PUD, L72).kind is EntryKind.MIGRATION  # hugetlb
    # A bit above young/dirty is not a migration entry.
    assert X.decode_leaf(swp(27, 0x4242 | 1 << 42), VA, Level.PTE, L72).kind is EntryKind.GARBAGE


def test_pfn_bits_follow_paging_levels():
    # 4-level: SWP_PFN_BITS = 46-12 = 34, so bit 34 of the offset is SWP_MIG_YOUNG, not PFN.
    assert X.decode_leaf(swp(27, 1 << 34 | 7), VA, Level.PTE, L72_4LVL).pfn == 7
    assert X.decode_leaf(swp(27, 1 << 34 | 7), VA, Level.PTE, L72).pfn == 1 << 34 | 7
    assert X.decode_leaf(swp(28, 1 << 34 | 7), VA, Level.PTE, L72_4LVL).kind is EntryKind.GARBAGE


def test_device_private_read_and_levels():
    leaf = X.decode_leaf(swp(29, 0x100), VA, Level.PTE, L72)
    assert (leaf.kind, leaf.pfn, leaf.writable) == (EntryKind.DEVICE_PRIVATE, 0x100, False)
    assert X.decode_leaf(swp(28, 0x100), VA, Level.PUD, L72).kind is EntryKind.GARBAGE


def test_device_exclusive_before_and_after_single_type():
    # 6.12 DEVICE_PRIVATE=y: 23 hwpoison, 24-26 migration, 27/28 device, 29/30 exclusive W/R.
    w = X.decode_leaf(swp(29, 0x77), VA, Level.PTE, L612_DP)
    r = X.decode_leaf(swp(30, 0x77), VA, Level.PTE, L612_DP)
    assert (w.kind, w.pfn, w.writable) == (EntryKind.DEVICE_EXCLUSIVE, 0x77, True)
    assert (r.kind, r.writable) == (EntryKind.DEVICE_EXCLUSIVE, False)
    # 7.2: one SWP_DEVICE_EXCLUSIVE = 30; permission lives in the VMA.
    one = X.decode_leaf(swp(30, 0x77), VA, Level.PTE, L72)
    assert (one.kind, one.pfn, one.writable) == (EntryKind.DEVICE_EXCLUSIVE, 0x77, False)
    assert X.describe(swp(30, 0x77), Level.PTE, L72)[0][0] == "TYPE=30(device_exclusive)"
    assert X.decode_leaf(swp(30, 0x77), VA, Level.PMD, L72).kind is EntryKind.GARBAGE


def test_hwpoison_carries_pfn():
    for layout, t in ((L61, 26), (L612, 27), (L72, 24)):
        leaf = X.decode_leaf(swp(t, 0x999), VA, Level.PTE, layout)
        assert (leaf.kind, leaf.pfn) == (EntryKind.HWPOISON, 0x999)


def test_pte_markers_by_kernel():
    # 6.1: marker 30 with UFFD_WP only; 6.12: 31 with POISONED; 7.2: 31 with GUARD.
    assert X.decode_leaf(swp(30, 1), VA, Level.PTE, L61).kind is EntryKind.MARKER
    assert X.decode_leaf(swp(30, 2), VA, Level.PTE, L61).kind is EntryKind.GARBAGE
    assert X.decode_leaf(swp(31, 2), VA, Level.PTE, L612).kind is EntryKind.MARKER
    assert X.decode_leaf(swp(31, 4), VA, Level.PTE, L612).kind is EntryKind.GARBAGE
    assert X.decode_leaf(swp(31, 4), VA, Level.PTE, L72).kind is EntryKind.MARKER
    assert X.decode_leaf(swp(31, 0), VA, Level.PTE, L72).kind is EntryKind.GARBAGE
    assert X.decode_leaf(swp(31, 1), VA, Level.PMD, L72).kind is EntryKind.MARKER  # hugetlb uffd-wp


def test_swapin_error_only_on_6_1():
    leaf = X.decode_leaf(swp(31, 0x55), VA, Level.PTE, L61)
    assert leaf.kind is EntryKind.SWAPIN_ERROR and leaf.pfn is None
    assert X.decode_leaf(swp(31, 0x55), VA, Level.PMD, L61).kind is EntryKind.GARBAGE


def test_bit7_in_a_swap_pte_is_garbage():
    # The swap layout keeps bit 7 zero (and at PMD/PUD it is _PAGE_PSE, i.e. present).
    leaf = X.decode_leaf(swp(0, 0x1234) | 1 << 7, VA, Level.PTE, L72)
    assert leaf.kind is EntryKind.GARBAGE and leaf.swap_type == 0 and leaf.pfn is None
    assert "BIT7" in X.describe(leaf.raw, Level.PTE, L72)[0]


def test_type_missing_from_layout_is_garbage():
    # The formula defines all 32 types; a layout learned otherwise may not.
    layout = dataclasses.replace(L72, swap=dataclasses.replace(L72.swap, hwpoison=None))
    assert X.decode_leaf(swp(24, 0x999), VA, Level.PTE, layout).kind is EntryKind.GARBAGE
    assert X.describe(swp(24, 0x999), Level.PTE, layout)[0][0] == "TYPE=24(undefined)"


def test_never_raises_on_any_value():
    rng = random.Random(20250722)
    layouts = (L61, L61_DP, L612, L612_DP, L72, L72_4LVL)
    for _ in range(4000):
        raw = rng.getrandbits(64)
        if rng.random() < 0.5:
            raw &= ~1  # many non-present values
        for level in (Level.PTE, Level.PMD, Level.PUD, Level.P4D):
            layout = rng.choice(layouts)
            leaf = X.decode_leaf(raw, VA, level, layout)
            assert (leaf is None) == (raw == 0)
            if leaf is not None and leaf.kind.maps_memory:
                assert leaf.pfn is not None
            X.describe(raw, level, layout)
