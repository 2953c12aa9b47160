# SPDX-License-Identifier: GPL-2.0-or-later
"""arm64 descriptors decoded as the kernel's helpers read them.

Every expected value is computed here by hand from the formulas of
arch/arm64/include/asm/pgtable-hwdef.h, pgtable-prot.h and pgtable.h (6.1,
6.12 and 7.2 trees; arm64-facts §1-§5), never from the decoder's own output.
"""

import struct

import pytest

from drgn_p2p import arch
from drgn_p2p.arch import arm64 as A
from drgn_p2p.arch import x86_64 as X
from drgn_p2p.classify import Classifier
from drgn_p2p.coalesce import coalesce_segments
from drgn_p2p.records import EntryKind, Level, PageKind, level_shift
from drgn_p2p.scan import PteScanner
from drgn_p2p.walk import PageTableWalker, TableSlice

from .layouts import (A61, A72, A72_16K, A72_16K_47, A72_48, A72_64K_52, A612, VM_FLAGS_ANON, VM_FLAGS_PCIBAR,
                      make_arm64_layout, make_vma)

# Bits, spelled out from the headers (7.2.13 pgtable-hwdef.h:164-176, pgtable-prot.h:16-32).
VALID, PAGE = 1 << 0, 3
USER, RDONLY, AF, NG = 1 << 6, 1 << 7, 1 << 10, 1 << 11
SH = 3 << 8
WRITE, CONT, PXN, UXN = 1 << 51, 1 << 52, 1 << 53, 1 << 54
DIRTY, SPECIAL, DEVMAP, BIT58 = 1 << 55, 1 << 56, 1 << 57, 1 << 58


def attr(index: int) -> int:
    """PTE_ATTRINDX(t) = t << 2."""
    return index << 2


#: The sysfs resource0 PTE of an ivshmem BAR, observed on Debian 7.2 arm64
#: under QEMU (arm64-facts §4.3): pgprot_device() + pte_mkspecial().
BAR_PTE = 0x0168008000000C53


def test_observed_bar_pte_bit_by_bit():
    # Rebuild it from the macros: PROT_DEVICE_nGnRE-style user mapping of PA 2^39.
    built = PAGE | attr(4) | USER | AF | NG | (1 << 39) | WRITE | PXN | UXN | SPECIAL
    assert built == BAR_PTE
    leaf = A.decode_leaf(BAR_PTE, 0xFFFF_8000_0000, Level.PTE, A72)
    assert leaf.kind == EntryKind.PRESENT
    assert leaf.pfn == (1 << 39) >> 12 == 0x8000000
    assert leaf.special and leaf.writable and not leaf.devmap
    assert leaf.size == 4096
    names, memtype = A.describe(BAR_PTE, Level.PTE, A72)
    assert names == ["VALID", "PAGE", "ATTRINDX=4", "USER", "AF", "NG", "WRITE", "PXN", "UXN", "SPECIAL"]
    assert memtype == "Device-nGnRE"  # MT_DEVICE_nGnRE = 4: pgprot_device()


def test_bar_pte_on_612_devmap_bit_is_clear_and_on_61():
    for layout in (A612, A61):
        leaf = A.decode_leaf(BAR_PTE, 0, Level.PTE, layout)
        assert (leaf.kind, leaf.pfn, leaf.special, leaf.devmap) == (EntryKind.PRESENT, 0x8000000, True, False)
    # On 6.12 (bit 57 = PTE_DEVMAP) the same PTE with DEVMAP set is devmap; on 7.2 bit 57 means nothing.
    assert A.decode_leaf(BAR_PTE | DEVMAP, 0, Level.PTE, A612).devmap
    assert not A.decode_leaf(BAR_PTE | DEVMAP, 0, Level.PTE, A72).devmap
    assert "BIT57" in A.describe(BAR_PTE | DEVMAP, Level.PTE, A72)[0]
    assert "DEVMAP" in A.describe(BAR_PTE | DEVMAP, Level.PTE, A612)[0]


@pytest.mark.parametrize("index,name", [(0, "Normal"), (1, "Normal-Tagged"), (2, "Normal-NC"),
                                        (3, "Device-nGnRnE"), (4, "Device-nGnRE")])
def test_attrindx_selects_the_mair_slot(index, name):
    raw = PAGE | attr(index) | AF | (0x40000 << 12)
    assert A.memory_type(raw, A72) == name
    assert A.describe(raw, Level.PTE, A72)[1] == name


def test_fsdax_pte_612_read_and_written():
    # insert_pfn() + pte_mkdevmap() = DEVMAP|SPECIAL; ext4 DAX: read-only until the write fault.
    read = PAGE | USER | RDONLY | AF | NG | 0x140203000 | PXN | UXN | SPECIAL | DEVMAP
    assert read == 0x0360000140203CC3
    written = (read & ~RDONLY) | WRITE | DIRTY
    assert written == 0x03E8000140203C43
    r = A.decode_leaf(read, 0, Level.PTE, A612)
    w = A.decode_leaf(written, 0, Level.PTE, A612)
    assert (r.pfn, r.special, r.devmap, r.writable) == (0x140203, True, True, False)
    assert (w.pfn, w.special, w.devmap, w.writable) == (0x140203, True, True, True)
    assert A.describe(written, Level.PTE, A612)[0] == [
        "VALID", "PAGE", "ATTRINDX=0", "USER", "AF", "NG", "WRITE", "PXN", "UXN", "DIRTY", "SPECIAL", "DEVMAP"]


def test_devdax_pmd_block_612():
    # insert_pfn_pmd(): pmd_mkhuge() (type 0b01) + pmd_mkdevmap() (DEVMAP only).
    raw = VALID | USER | RDONLY | AF | NG | 0x140200000 | WRITE | PXN | UXN | DEVMAP
    assert raw == 0x0268000140200CC1
    leaf = A.decode_leaf(raw, 0x7F00_0000_0000, Level.PMD, A612)
    assert (leaf.kind, leaf.pfn, leaf.devmap, leaf.special, leaf.size) == (
        EntryKind.PRESENT, 0x140200, True, False, 2 << 20)
    assert "BLOCK" in A.describe(raw, Level.PMD, A612)[0]
    # pmd_pfn() masks the block's alignment: stray bits inside it do not move the PFN, and are named.
    odd = raw | 0x5000
    assert A.decode_leaf(odd, 0, Level.PMD, A612).pfn == 0x140200
    assert {"RSVD12", "RSVD14"} <= set(A.describe(odd, Level.PMD, A612)[0])


def test_type_bits_by_level():
    page = PAGE | AF | (0x40000 << 12)
    block = VALID | AF | (0x40000 << 12)
    # 0b01 at the last level is reserved: never written by Linux.
    assert A.decode_leaf(block, 0, Level.PTE, A72).kind == EntryKind.GARBAGE
    assert "RESERVED" in A.describe(block, Level.PTE, A72)[0]
    # Blocks are leaves at PMD/PUD; never at P4D/PGD.
    assert A.decode_leaf(block, 0, Level.PUD, A72).kind == EntryKind.PRESENT
    assert A.decode_leaf(block, 0, Level.P4D, A72).kind == EntryKind.GARBAGE
    # 0b11 above the last level is a table: the walker descends, decode calls it garbage.
    assert A.is_table(page, Level.PMD) and not A.is_table(page, Level.PTE) and not A.is_table(block, Level.PMD)
    assert A.decode_leaf(page, 0, Level.PMD, A72).kind == EntryKind.GARBAGE


def test_table_descriptor_attributes_and_address():
    # User table: PMD_TYPE_TABLE | PMD_TABLE_AF (7.x) | PMD_TABLE_PXN (59).
    raw = 3 | AF | (1 << 59) | 0x41234000
    assert A.table_phys(raw, A72) == 0x41234000
    assert A.describe(raw, Level.PMD, A72) == (["TABLE", "AF", "PXN_TABLE"], "")
    # With LPA2 bits 9:8 of a table entry are PA[51:50] too (__pmd_to_phys).
    assert A.table_phys(raw | (1 << 8), A72) == 0x41234000 | (1 << 50)
    # Without LPA2 they are SH and do not move the address (PTE_MAYBE_SHARED cleared).
    assert A.table_phys(raw | SH, A72_48) == 0x41234000


def test_lpa2_pa_bits_51_50():
    # __pte_to_phys() with LPA2: (pte & PTE_ADDR_LOW) | ((pte & 0x300) << 42).
    raw = PAGE | USER | AF | NG | (1 << 8) | 0x1000 | WRITE | PXN | UXN
    assert raw == 0x0068000000001D43
    assert A.decode_leaf(raw, 0, Level.PTE, A72).pfn == ((1 << 50) | 0x1000) >> 12 == 0x4000000001
    assert "PA[51:50]=1" in A.describe(raw, Level.PTE, A72)[0]
    # The same bits are SH on a kernel running without LPA2 (48-bit VA).
    assert A.decode_leaf(raw, 0, Level.PTE, A72_48).pfn == 1
    assert "SH=1" in A.describe(raw, Level.PTE, A72_48)[0]
    # 6.1 (no LPA2; PTE_ADDR_LOW below bit 48): bits 48-49 are not address bits there.
    assert A.decode_leaf(raw | (1 << 48), 0, Level.PTE, A61).pfn == 1
    assert A.decode_leaf(raw | (1 << 48), 0, Level.PTE, A72_48).pfn == ((1 << 48) | 0x1000) >> 12


def test_64k_pa52_bits_15_12():
    # 64K + PA52: PTE_ADDR_HIGH = bits 15:12, shifted up by 36 to PA[51:48].
    raw = PAGE | SH | AF | NG | USER | 0x10000 | 0x1000 | WRITE | PXN | UXN
    assert raw == 0x0068000000011F43
    leaf = A.decode_leaf(raw, 0, Level.PTE, A72_64K_52)
    assert leaf.pfn == ((1 << 48) | 0x10000) >> 16 == 0x100000001
    assert leaf.size == 64 << 10


def test_16k_pte_and_pmd_sizes():
    raw = PAGE | USER | AF | NG | 0x40004000 | WRITE | PXN | UXN
    assert raw == 0x0068000040004C43
    leaf = A.decode_leaf(raw, 0, Level.PTE, A72_16K)
    assert (leaf.pfn, leaf.size, leaf.writable) == (0x40004000 >> 14, 16 << 10, True)
    block = VALID | AF | 0x42000000
    pmd = A.decode_leaf(block, 0, Level.PMD, A72_16K)
    assert (pmd.size, pmd.pfn) == (32 << 20, 0x42000000 >> 14)  # PMD 32 MiB with 16K pages
    assert A72_16K.geometry.pages(Level.PMD) == 2048


def test_present_invalid_v610():
    # PAGE_NONE (7.2 pgtable-prot.h): _PAGE_DEFAULT & ~VALID | PRESENT_INVALID | RDONLY | NG | PXN | UXN;
    # SH stripped with LPA2 (adjust_protection_map).
    raw = 2 | AF | RDONLY | NG | PXN | UXN | 0x40000000
    assert raw == 0x0060000040000C82
    leaf = A.decode_leaf(raw, 0, Level.PTE, A72)
    assert (leaf.kind, leaf.pfn) == (EntryKind.PROTNONE, 0x40000)
    names = A.describe(raw, Level.PTE, A72)[0]
    assert "PRESENT_INVALID" in names and "PROT_NONE" in names and "VALID" not in names and "NG" not in names
    # A THP being split (pmdp_invalidate): present-invalid with USER kept: present, not protnone.
    split = AF | NG | USER | PXN | 0x40200000
    leaf = A.decode_leaf(split, 0, Level.PMD, A72)
    assert (leaf.kind, leaf.pfn) == (EntryKind.PROTNONE, 0x40200)
    names = A.describe(split, Level.PMD, A72)[0]
    assert "PRESENT_INVALID" in names and "PROT_NONE" not in names
    # The same special BAR PTE made PROT_NONE keeps AttrIndx and SPECIAL (pte_modify's mask).
    none_bar = (BAR_PTE & ~(VALID | WRITE | USER)) | RDONLY
    leaf = A.decode_leaf(none_bar, 0, Level.PTE, A72)
    assert (leaf.kind, leaf.pfn, leaf.special) == (EntryKind.PROTNONE, 0x8000000, True)
    assert A.describe(none_bar, Level.PTE, A72)[1] == "Device-nGnRE"


def test_prot_none_and_pmd_present_invalid_v61():
    # 6.1 PAGE_NONE: VALID clear, PTE_PROT_NONE (58), SH kept.
    raw = 2 | SH | AF | RDONLY | NG | BIT58 | PXN | UXN | 0x40000000
    assert raw == 0x0460000040000F82
    assert A.decode_leaf(raw, 0, Level.PTE, A61).kind == EntryKind.PROTNONE
    assert "PROT_NONE" in A.describe(raw, Level.PTE, A61)[0]
    # On 7.2 bit 58 with VALID clear means nothing, bit 11 does: the 6.1 entry is present-invalid there.
    assert A.decode_leaf(raw, 0, Level.PTE, A72).kind == EntryKind.PROTNONE
    assert A.decode_leaf(raw & ~NG, 0, Level.PTE, A72).kind == EntryKind.GARBAGE
    # 6.1 pmd_mkinvalid(): VALID cleared, PMD_PRESENT_INVALID (59) set.
    pmd = AF | NG | USER | (1 << 59) | 0x40200000
    assert A.decode_leaf(pmd, 0, Level.PMD, A61).kind == EntryKind.PROTNONE
    assert "PRESENT_INVALID_PMD" in A.describe(pmd, Level.PMD, A61)[0]
    # ... which is not a PTE bit: the same value at PTE level is not present.
    assert A.decode_leaf(pmd & ~NG, 0, Level.PTE, A61).kind != EntryKind.PROTNONE


def test_uffd_wp_bit_v610():
    raw = BAR_PTE | BIT58
    assert "UFFD_WP" in A.describe(raw, Level.PTE, A72)[0]
    assert "BIT58" in A.describe(raw, Level.PTE, A61)[0]  # valid entry: PTE_PROT_NONE is read only when !VALID


def swp72(stype: int, offset: int) -> int:
    """__swp_entry() of 6.10+: type << 6 | offset << 12."""
    return stype << 6 | offset << 12


def test_swap_entries_v610():
    # Debian 7.2 arm64: MAX_SWAPFILES 24, HWPOISON 24, MIGRATION 25/26/27, DEVICE 28/29, EXCLUSIVE 30, MARKER 31.
    st = A72.swap
    assert (st.max_swapfiles, st.migration_write, st.device_write, st.pte_marker) == (24, 27, 28, 31)
    raw = swp72(3, 0x1234)
    assert raw == 0x12340C0
    leaf = A.decode_leaf(raw, 0, Level.PTE, A72)
    assert (leaf.kind, leaf.swap_type, leaf.swap_offset, leaf.pfn) == (EntryKind.SWAP, 3, 0x1234, None)
    excl = raw | 1 << 2  # PTE_SWP_EXCLUSIVE
    assert A.decode_leaf(excl, 0, Level.PTE, A72).kind == EntryKind.SWAP
    uffd = raw | 1 << 3  # PTE_SWP_UFFD_WP
    assert A.describe(excl | 1 << 3, Level.PTE, A72)[0] == [
        "TYPE=3(swapfile)", "OFFSET=0x1234", "SWP_EXCLUSIVE", "SWP_UFFD_WP"]
    assert A.decode_leaf(uffd, 0, Level.PTE, A72).kind == EntryKind.SWAP
    mig = swp72(27, 0x40000)
    assert mig == 0x400006C0
    leaf = A.decode_leaf(mig, 0, Level.PTE, A72)
    assert (leaf.kind, leaf.pfn, leaf.writable) == (EntryKind.MIGRATION, 0x40000, True)
    dev = swp72(28, 0x40000)
    leaf = A.decode_leaf(dev, 0, Level.PTE, A72)
    assert (leaf.kind, leaf.pfn, leaf.writable) == (EntryKind.DEVICE_PRIVATE, 0x40000, True)
    assert A.describe(dev, Level.PTE, A72)[0][0] == "TYPE=28(device_write)"
    marker = swp72(31, 1)  # PTE_MARKER_UFFD_WP
    assert A.decode_leaf(marker, 0, Level.PTE, A72).kind == EntryKind.MARKER
    # Bits no swap field owns (4-5, 62-63) make it garbage; so does a set bit 1.
    for stray in (1 << 4, 1 << 5, 1 << 62, 1 << 63, 1 << 1):
        leaf = A.decode_leaf(raw | stray, 0, Level.PTE, A72)
        assert leaf.kind == EntryKind.GARBAGE, hex(stray)
    assert "BIT4" in A.describe(raw | 1 << 4, Level.PTE, A72)[0]


def test_swap_entries_v61():
    # 6.1: type 3-7, offset 8-57 (6.1.176 pgtable.h:1000-1016); MAX_SWAPFILES 27, MIG 28/29/30, SWAPIN_ERROR 31.
    raw = 3 << 3 | 0x1234 << 8
    assert raw == 0x123418
    leaf = A.decode_leaf(raw, 0, Level.PTE, A61)
    assert (leaf.kind, leaf.swap_type, leaf.swap_offset) == (EntryKind.SWAP, 3, 0x1234)
    mig = 30 << 3 | 0x40000 << 8
    leaf = A.decode_leaf(mig, 0, Level.PTE, A61)
    assert (leaf.kind, leaf.pfn, leaf.writable) == (EntryKind.MIGRATION, 0x40000, True)
    assert A.decode_leaf(31 << 3, 0, Level.PTE, A61).kind == EntryKind.SWAPIN_ERROR
    # The 6.10+ layout reads the same value differently: 0x123418 has bit 4 (stray) there.
    assert A.decode_leaf(raw, 0, Level.PTE, A72).kind == EntryKind.GARBAGE


@pytest.mark.parametrize("layout,shifts,entries", [
    (A72, (48, 39, 30, 21, 12), (16, 512, 512, 512, 512)),  # 4K, 52-bit VA with LPA2: 5 levels, 16-entry root
    (A72_48, (39, 30, 21, 12), (512, 512, 512, 512)),  # 4K, 48-bit (lpa2 off)
    (A72_16K, (47, 36, 25, 14), (32, 2048, 2048, 2048)),  # 16K, 52-bit: 4 levels, 32-entry root
    (A72_16K_47, (36, 25, 14), (2048, 2048, 2048)),  # 16K on a CPU without LPA2: 47 bits, 3 levels
    (make_arm64_layout((7, 2), page_shift=14, va_bits=48), (47, 36, 25, 14), (2, 2048, 2048, 2048)),
    (make_arm64_layout((7, 2), page_shift=16, va_bits=48), (42, 29, 16), (64, 8192, 8192)),
    (A72_64K_52, (42, 29, 16), (1024, 8192, 8192)),
])
def test_geometry_from_granule_and_va_bits(layout, shifts, entries):
    # ARM64_HW_PGTABLE_LEVELS(va) = (va - 4) / (PAGE_SHIFT - 3); level shift (PAGE_SHIFT - 3) * (4 - n) + 3.
    geometry = layout.geometry
    assert tuple(t.shift for t in geometry.levels) == shifts
    assert tuple(t.entries for t in geometry.levels) == entries
    assert layout.levels == len(shifts)
    for t in geometry.levels:
        assert level_shift(t.leaf_level, layout.page_shift) == t.shift
    assert geometry.levels[0].level == Level.PGD and geometry.levels[-1].level == Level.PTE


def test_x86_geometry_is_what_the_walker_had():
    from .layouts import L72, L72_4LVL

    assert tuple((t.level, t.leaf_level, t.shift, t.entries) for t in L72.geometry.levels) == (
        (Level.PGD, Level.PGD, 48, 512), (Level.P4D, Level.P4D, 39, 512), (Level.PUD, Level.PUD, 30, 512),
        (Level.PMD, Level.PMD, 21, 512), (Level.PTE, Level.PTE, 12, 512))
    assert tuple((t.level, t.leaf_level, t.shift) for t in L72_4LVL.geometry.levels) == (
        (Level.PGD, Level.P4D, 39), (Level.PUD, Level.PUD, 30), (Level.PMD, Level.PMD, 21), (Level.PTE, Level.PTE, 12))
    raw = 0x1234067
    assert L72.geometry.address(raw) == X.table_phys(raw, L72)


class _Mem:
    def __init__(self):
        self.tables = {}

    def read(self, phys, size):
        import drgn

        data = self.tables.get(phys)
        if data is None:
            raise drgn.FaultError("no table", phys)
        return data[:size]


def _table(entries, n):
    values = [0] * n
    for i, v in entries.items():
        values[i] = v
    return struct.pack(f"<{n}Q", *values)


def test_walk_16k_tables_of_2048_entries():
    """A 16K, 52-bit (4-level, 32-entry root) walk reaches entry 2047 of each table."""
    layout = A72_16K
    mem = _Mem()
    root, pud, pmd, pte = 0x4000_0080, 0x4100_0000, 0x4100_4000, 0x4100_8000  # root: a 256 B slab object
    va = (5 << 47) | (2047 << 36) | (1500 << 25) | (2047 << 14)
    table = 3 | (1 << 59)
    mem.tables[root] = _table({5: pud | table}, 32)
    mem.tables[pud] = _table({2047: pmd | table}, 2048)
    mem.tables[pmd] = _table({1500: pte | table, 1501: VALID | AF | 0x5000_0000}, 2048)  # and a 32 MiB block
    mem.tables[pte] = _table({2047: BAR_PTE}, 2048)
    walker = PageTableWalker(mem.read, layout, root)
    leaves = list(walker.walk(0, 1 << 52))
    assert leaves == [(va, Level.PTE, BAR_PTE), (va - (2047 << 14) + (1 << 25), Level.PMD, VALID | AF | 0x5000_0000)]
    assert walker.tables_read == 4
    path = walker.path(va)
    assert [(lvl, phys) for lvl, phys, _ in path] == [
        (Level.PGD, root + 5 * 8), (Level.PUD, pud + 2047 * 8), (Level.PMD, pmd + 1500 * 8), (Level.PTE, pte + 2047 * 8)]
    leaf = arch.decode_leaf(BAR_PTE, va, Level.PTE, layout)
    assert leaf.pfn == (1 << 39) >> 14 and leaf.size == 1 << 14


def test_walk_lpa2_table_address_high_bits():
    """A table above 1 PiB: the walker follows PA[51:50] from bits 9:8 of the table entry."""
    layout = A72
    mem = _Mem()
    high = 1 << 50
    root = 0x4000_0000
    p4d, pud, pmd, pte = high | 0x1000, 0x2000, 0x3000, 0x4000
    table = 3 | (1 << 59)
    mem.tables[root] = _table({1: 0x1000 | (1 << 8) | table}, 16)  # PA[51:50] = 1
    mem.tables[p4d] = _table({0: pud | table}, 512)
    mem.tables[pud] = _table({0: pmd | table}, 512)
    mem.tables[pmd] = _table({0: pte | table}, 512)
    mem.tables[pte] = _table({3: BAR_PTE}, 512)
    leaves = list(PageTableWalker(mem.read, layout, root).walk(0, 1 << 52))
    assert leaves == [((1 << 48) + 3 * 4096, Level.PTE, BAR_PTE)]


def test_scan_a_16k_table_of_bar_ptes_in_one_run():
    """A whole 2048-entry table of a BAR mapped linearly is one run, as entry by entry."""
    layout = A72_16K
    base = 0x7F00_0000_0000
    bar_pfn = (1 << 39) >> 14
    vma = make_vma(VM_FLAGS_PCIBAR, start=base, end=base + (2048 << 14), pgoff=bar_pfn)
    entries = [(BAR_PTE & ~0xFFFF_FFFF_F000 | ((bar_pfn + i) << 14)) for i in range(2048)]
    data = struct.pack("<2048Q", *entries)
    piece = TableSlice(base, data, 0, 2047, 14)
    cls = Classifier.from_tables(layout, [], [(0x10000, 0x20000)], [((1 << 39), (1 << 39) + (2048 << 14), "bar")])
    segment = PteScanner(layout, cls, vma).uniform_run(piece)
    assert segment is not None
    leaf, page, count = segment
    assert (leaf.va, leaf.pfn, count, page.kind) == (base, bar_pfn, 2048, PageKind.NO_MEMMAP)
    slow = [(A.decode_leaf(raw, va, lvl, layout), None) for va, lvl, raw in piece.leaves()]
    slow = [(lf, cls.classify(lf.pfn), 1) for lf, _ in slow]
    assert [(r.first, r.count) for r in coalesce_segments(vma, slow)] == [
        (r.first, r.count) for r in coalesce_segments(vma, [segment])]
    # With PA[51:50] set (LPA2) the fast path declines rather than misread the PFN.
    lpa2 = [e | (1 << 8) for e in entries]
    piece = TableSlice(base, struct.pack("<2048Q", *lpa2), 0, 2047, 14)
    assert PteScanner(layout, cls, vma).uniform_run(piece) is None


def test_pieces_of_a_16k_table_keep_the_granule():
    """A 16K table split at its empty entries: each piece's leaves lie 16 KiB apart at
    base + (index << 14), as the whole table's do (entry i of a PTE table maps
    base + i * PAGE_SIZE); a piece that fell back to 4 KiB steps put runs outside their VMA."""
    from drgn_p2p.scan import pieces

    base = 0x7FFF_9D08_0000
    entries = [0] * 2048
    for i in (3, 4, 5, 9, 2047):
        entries[i] = PAGE | AF | USER | NG | ((0x1_0000 + i) << 14)
    whole = TableSlice(base, struct.pack("<2048Q", *entries), 0, 2047, 14)
    split = [leaf for piece in pieces(whole) for leaf in piece.leaves()]
    assert [va for va, _, _ in split] == [base + (i << 14) for i in (3, 4, 5, 9, 2047)]
    assert split == list(whole.leaves())


def test_anon_pte_linear_test_uses_the_granule():
    """vm_pgoff counts PAGE_SIZE pages: the linear test must shift by 14 with 16K pages."""
    layout = A72_16K
    from drgn_p2p.coalesce import coalesce

    vma = make_vma(VM_FLAGS_ANON, start=0x7F00_0000_0000, end=0x7F00_0000_0000 + (4 << 14), pgoff=0x7F00_0000_0000 >> 14)
    leaves = [A.decode_leaf(PAGE | AF | USER | NG | ((0x1_0000 + i) << 14), vma.start + (i << 14), Level.PTE, layout)
              for i in range(4)]
    runs = list(coalesce(vma, [(lf, None) for lf in leaves]))
    assert len(runs) == 1 and runs[0].end == vma.start + (4 << 14)


def _arm64_program(symbols=()):
    import drgn

    prog = drgn.Program(drgn.Platform(drgn.Architecture.AARCH64,
                                      drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    names = set(symbols)

    def find_symbol(prog, name, address, one):
        if name in names:
            return [drgn.Symbol(name, 0xFFFF800080000000, 8, drgn.SymbolBinding.GLOBAL, drgn.SymbolKind.FUNC)]
        return []

    prog.register_symbol_finder("test", find_symbol, enable_index=0)
    return prog


@pytest.mark.parametrize("info,levels,page_shift,lpa2,root", [
    # Debian 7.2 arm64 under QEMU -cpu max: VA_BITS 52, T1SZ 12 (64 - 52) -> LPA2, 5 levels.
    ({"PAGESIZE": "4096", "NUMBER(VA_BITS)": "52", "NUMBER(TCR_EL1_T1SZ)": "0xc",
      "NUMBER(MAX_PHYSMEM_BITS)": "52"}, 5, 12, True, 16),
    # The same kernel with arm64.nolva / a CPU without LPA2: 48 bits in use, 4 levels.
    ({"PAGESIZE": "4096", "NUMBER(VA_BITS)": "52", "NUMBER(TCR_EL1_T1SZ)": "0x10",
      "NUMBER(MAX_PHYSMEM_BITS)": "48"}, 4, 12, False, 512),
    # -arm64-16k without LPA2: 47 bits (VA_BITS_MIN for 16K), 3 levels.
    ({"PAGESIZE": "16384", "NUMBER(VA_BITS)": "52", "NUMBER(TCR_EL1_T1SZ)": "0x11"}, 3, 14, False, 2048),
    ({"PAGESIZE": "16384", "NUMBER(VA_BITS)": "52", "NUMBER(TCR_EL1_T1SZ)": "0xc"}, 4, 14, True, 32),
    # 6.1 (VA_BITS 48, no vabits_actual variable, but T1SZ is in vmcoreinfo too).
    ({"PAGESIZE": "4096", "NUMBER(VA_BITS)": "48", "NUMBER(TCR_EL1_T1SZ)": "0x10"}, 4, 12, False, 512),
])
def test_layout_learns_arm64_paging_from_vmcoreinfo(info, levels, page_shift, lpa2, root):
    from drgn_p2p import layout

    learned = {}
    shift, geometry, bits = layout._arm64_paging(_arm64_program(["handle_userfault"]), info, (7, 2), learned)
    assert (shift, len(geometry.levels), bits.lpa2, geometry.levels[0].entries) == (page_shift, levels, lpa2, root)
    assert geometry.addr_high_mask == (0x300 if lpa2 else 0)
    assert learned["va_bits"].how == "vmcoreinfo" and learned["lpa2"].how == "vmcoreinfo"
    assert bits.uffd_wp_bit == 58 and bits.present_invalid_bit == 11


def test_layout_arm64_without_userfaultfd_has_no_uffd_bits():
    from drgn_p2p import layout

    info = {"PAGESIZE": "4096", "NUMBER(VA_BITS)": "48", "NUMBER(TCR_EL1_T1SZ)": "0x10"}
    _, _, bits = layout._arm64_paging(_arm64_program(), info, (7, 2), {})
    assert bits.uffd_wp_bit is None and bits.swp_uffd_wp_bit is None
    import dataclasses

    no_uffd = dataclasses.replace(A72_48, arm64=bits)
    assert "BIT58" in A.describe(BAR_PTE | BIT58, Level.PTE, no_uffd)[0]
    # Without PTE_SWP_UFFD_WP bit 3 of a swap entry is owned by nothing: garbage.
    assert A.decode_leaf(swp72(3, 0x1234) | 1 << 3, 0, Level.PTE, no_uffd).kind == EntryKind.GARBAGE


def test_vma_flags_from_the_7x_enum_are_named_the_arm64_way():
    from drgn_p2p import layout_tables as lt

    # VMA_*_BIT enumerators as 7.2.13 include/linux/mm.h declares them (aliases included).
    enumerators = [("VMA_PFNMAP_BIT", 10), ("VMA_ARCH_1_BIT", 24), ("VMA_HIGH_ARCH_0_BIT", 32),
                   ("VMA_HIGH_ARCH_4_BIT", 36), ("VMA_HIGH_ARCH_5_BIT", 37), ("VMA_HIGH_ARCH_6_BIT", 38),
                   ("VMA_ARM64_BTI_BIT", 24), ("VMA_MTE_BIT", 36), ("VMA_PKEY_BIT0_BIT", 32),
                   ("VMA_SHADOW_STACK_BIT", 38), ("VMA_HIGH_ARCH_3_BIT", 35), ("VMA_PKEY_BIT3_BIT", 35)]
    arm = lt.vma_bits_from_enum(enumerators, "arm64")
    assert arm == {"PFNMAP": 10, "ARM64_BTI": 24, "PKEY_BIT0": 32, "MTE": 36, "MTE_ALLOWED": 37, "SHADOW_STACK": 38}
    x86 = lt.vma_bits_from_enum(enumerators, "x86_64")
    assert x86["PAT"] == 24 and "MTE" not in x86 and "ARM64_BTI" not in x86 and x86["PKEY_BIT3"] == 35



def test_both_decoders_provide_the_decoder_api():
    from drgn_p2p.arch.common import DECODER_API

    for module in (A, X):
        assert all(hasattr(module, name) for name in DECODER_API), module.__name__
