# SPDX-License-Identifier: GPL-2.0-or-later
"""The page-table walker over a fake physical memory: it finds every leaf,
turns every unreadable table into a TableFault and goes on, survives a
process that exits mid-walk (its tables freed from some read on) and tables
that change between reads, and terminates on tables that point back at
themselves or an ancestor, reading no more tables than the range allows."""

import struct
from typing import Dict, List, Sequence, Tuple

import pytest

from drgn_p2p.records import Level
from drgn_p2p.walk import PageTableWalker, TableFault

from .fakephys import HUGE_BITS, PAGE, FakePhys, pte, table_entry
from .layouts import L72, L72_4LVL, PFN_MASK

LEVELS = {5: (Level.PGD, Level.P4D, Level.PUD, Level.PMD, Level.PTE), 4: (Level.PGD, Level.PUD, Level.PMD, Level.PTE)}
SHIFTS = {5: (48, 39, 30, 21, 12), 4: (39, 30, 21, 12)}
LAYOUTS = {5: L72, 4: L72_4LVL}
VA = 0x7F00_0000_0000  # 1 GiB aligned user address


class Tables:
    """Page tables built by mapping addresses; tables are allocated from *base* up."""

    def __init__(self, levels: int = 5, base: int = 0x10_0000) -> None:
        self.levels = LEVELS[levels]
        self.shifts = SHIFTS[levels]
        self.layout = LAYOUTS[levels]
        self._next = base
        self.tables: Dict[int, Dict[int, int]] = {}
        self.root = self._new()

    def _new(self) -> int:
        phys = self._next
        self._next += PAGE
        self.tables[phys] = {}
        return phys

    def table_of(self, va: int, level: Level) -> int:
        """Physical address of the table holding *va*'s entry at *level* (created if needed)."""
        phys = self.root
        for depth in range(self.levels.index(level)):
            index = (va >> self.shifts[depth]) & 511
            entry = self.tables[phys].get(index)
            if entry is None:
                child = self._new()
                self.tables[phys][index] = table_entry(child)
                phys = child
            else:
                phys = entry & PFN_MASK
        return phys

    def map(self, va: int, raw: int, level: Level = Level.PTE) -> int:
        """Put *raw* in *va*'s entry at *level*; return the entry's table."""
        phys = self.table_of(va, level)
        self.tables[phys][(va >> self.shifts[self.levels.index(level)]) & 511] = raw
        return phys

    def memory(self, **kwargs) -> FakePhys:
        mem = FakePhys(**kwargs)
        for phys, entries in self.tables.items():
            mem.set(phys, entries)
        return mem

    def walker(self, mem: FakePhys) -> PageTableWalker:
        return PageTableWalker(mem.read, self.layout, self.root)


def read_bound(start: int, end: int, shifts: Sequence[int]) -> int:
    """Most tables a walk of ``[start, end)`` can read: the root, plus one per
    entry of each non-leaf level that maps part of the range."""
    total = 1
    for shift in shifts[:-1]:
        total += ((end - 1) >> shift) - (start >> shift) + 1
    return total


def split(items) -> Tuple[List[Tuple[int, Level, int]], List[TableFault]]:
    leaves, faults = [], []
    for item in items:
        (faults if isinstance(item, TableFault) else leaves).append(item)
    return leaves, faults


def sample(levels: int = 5) -> Tuple[Tables, List[Tuple[int, Level, int]]]:
    """Three PTEs, a 2 MiB PMD leaf and a 1 GiB PUD leaf over 2 GiB from VA."""
    t = Tables(levels)
    expected = [
        (VA, Level.PTE, pte(0x1000)),
        (VA + 0x1000, Level.PTE, pte(0x1001)),
        (VA + 0x5000, Level.PTE, pte(0x2000)),
        (VA + (2 << 20), Level.PMD, (0x4_0000 << 12) | HUGE_BITS),
        (VA + (1 << 30), Level.PUD, (0x10_0000 << 12) | HUGE_BITS),
    ]
    for va, level, raw in expected:
        t.map(va, raw, level)
    return t, expected


@pytest.mark.parametrize("levels", [5, 4])
def test_walk_finds_every_leaf_in_order(levels: int) -> None:
    t, expected = sample(levels)
    mem = t.memory()
    walker = t.walker(mem)
    assert list(walker.walk(VA, VA + (2 << 30))) == expected
    assert walker.faults == 0
    # root, one table per level down to the PTE table; cached tables are not read again
    assert walker.tables_read == len(t.tables) == len(mem.reads)


@pytest.mark.parametrize("levels", [5, 4])
def test_walk_range_is_respected(levels: int) -> None:
    t, expected = sample(levels)
    walker = t.walker(t.memory())
    assert list(walker.walk(VA + 0x1000, VA + 0x2000)) == [expected[1]]
    # a huge leaf covering the start of the range is yielded at its own address
    assert list(walker.walk(VA + (2 << 20) + 0x3000, VA + (2 << 20) + 0x4000)) == [expected[3]]


@pytest.mark.parametrize("levels", [5, 4])
def test_unreadable_table_at_each_level_is_a_fault_and_the_walk_goes_on(levels: int) -> None:
    lvls = LEVELS[levels]
    for level in lvls[1:]:
        t = Tables(levels)
        shift_above = t.shifts[lvls.index(level) - 1]
        broken_va, good_va = VA, VA + (1 << shift_above)  # entries in different tables at *level*
        broken = t.map(broken_va, pte(0x1234))
        t.map(good_va, pte(0x5678))
        lost = t.table_of(broken_va, level)
        mem = t.memory()
        del mem.pages[lost]
        walker = t.walker(mem)
        items = list(walker.walk(VA, good_va + PAGE))
        assert len(items) == 2, (level, items)
        fault, leaf = items
        assert isinstance(fault, TableFault), (level, items)
        assert (fault.level, fault.phys, fault.va) == (level, lost, VA)
        assert "could not find memory segment" in fault.message
        assert leaf == (good_va, Level.PTE, pte(0x5678))
        assert walker.faults == 1
        assert broken in t.tables  # the leaf table existed; it just could not be reached


def test_unreadable_root_is_one_fault() -> None:
    t, _ = sample()
    mem = t.memory()
    del mem.pages[t.root]
    assert list(t.walker(mem).walk(0, 1 << 57)) == [
        TableFault(Level.PGD, 0, t.root, "could not find memory segment: 0x100000")
    ]


def test_short_read_is_a_fault() -> None:
    t, _ = sample()
    mem = t.memory()
    pte_table = t.table_of(VA, Level.PTE)
    mem.pages[pte_table] = mem.pages[pte_table][:100]
    leaves, faults = split(t.walker(mem).walk(VA, VA + (2 << 30)))
    assert [f.phys for f in faults] == [pte_table]
    assert faults[0].level == Level.PTE and "short read" in faults[0].message
    assert [level for _, level, _ in leaves] == [Level.PMD, Level.PUD]


def test_pfn_beyond_physical_memory_is_a_fault() -> None:
    t = Tables()
    t.map(VA, table_entry(PFN_MASK & ~0xFFF), Level.PMD)  # a PTE table at the top of the physical space
    t.map(VA + (2 << 20), pte(7))
    leaves, faults = split(t.walker(t.memory()).walk(VA, VA + (4 << 20)))
    assert [(f.level, f.phys) for f in faults] == [(Level.PTE, PFN_MASK & ~0xFFF)]
    assert leaves == [(VA + (2 << 20), Level.PTE, pte(7))]


@pytest.mark.parametrize("levels", [5, 4])
def test_process_exits_mid_walk(levels: int) -> None:
    """From the k-th read on, the mm's tables are freed: every k ends in faults, never an exception."""
    t, expected = sample(levels)
    clean = t.memory()
    assert list(t.walker(clean).walk(VA, VA + (2 << 30))) == expected
    total = len(clean.reads)
    for k in range(total + 1):

        def exit_after(mem: FakePhys, phys: int, k: int = k) -> None:
            if len(mem.reads) >= k:
                mem.pages.clear()  # exit_mmap() freed every table

        mem = t.memory(on_read=exit_after)
        if k == 0:
            mem.pages.clear()
        leaves, faults = split(t.walker(mem).walk(VA, VA + (2 << 30)))
        assert all(leaf in expected for leaf in leaves)
        assert leaves == sorted(leaves)
        if k < total:
            assert faults, k
        assert len(mem.reads) <= total


def test_tables_change_between_reads() -> None:
    """A live kernel frees, clears and reuses tables while the walk is between reads."""
    t, expected = sample()
    pmd_table = t.table_of(VA, Level.PMD)
    pte_table = t.table_of(VA, Level.PTE)

    def free_pte_table(mem: FakePhys, phys: int) -> None:
        if phys == pmd_table:
            mem.pages.pop(pte_table, None)

    leaves, faults = split(t.walker(t.memory(on_read=free_pte_table)).walk(VA, VA + (2 << 30)))
    assert [(f.level, f.phys) for f in faults] == [(Level.PTE, pte_table)]
    assert leaves == expected[3:]

    def zap_pte_table(mem: FakePhys, phys: int) -> None:
        if phys == pmd_table:
            mem.set(pte_table, {})

    leaves, faults = split(t.walker(t.memory(on_read=zap_pte_table)).walk(VA, VA + (2 << 30)))
    assert not faults and leaves == expected[3:]

    def reuse_as_pmd_table(mem: FakePhys, phys: int) -> None:
        # the PTE table page is freed and reused as some process's PMD table
        if phys == pmd_table:
            mem.set(pte_table, {0: table_entry(0x99_9000), 3: table_entry(0x10_0000)})

    leaves, faults = split(t.walker(t.memory(on_read=reuse_as_pmd_table)).walk(VA, VA + (2 << 30)))
    assert not faults
    assert leaves[:2] == [(VA, Level.PTE, table_entry(0x99_9000)), (VA + 0x3000, Level.PTE, table_entry(0x10_0000))]


@pytest.mark.parametrize("levels", [5, 4])
def test_tables_pointing_at_themselves_or_an_ancestor_terminate(levels: int) -> None:
    t = Tables(levels)
    lvls = LEVELS[levels]
    pmd_table = t.table_of(VA, Level.PMD)
    pud_table = t.table_of(VA, Level.PUD)
    # every PMD entry points at its own table, every PUD entry but the first at the root
    t.tables[pmd_table].update({i: table_entry(pmd_table) for i in range(512)})
    t.tables[pud_table].update({i: table_entry(t.root) for i in range(1, 512)})
    start, end = VA, VA + (4 << 30)
    mem = t.memory()
    walker = t.walker(mem)
    leaves, faults = split(walker.walk(start, end))
    assert not faults
    assert len(mem.reads) <= read_bound(start, end, t.shifts)
    # the PMD table read as a PTE table: 512 "leaves" per PMD entry of the first GiB
    assert sum(1 for va, _, _ in leaves if va < VA + (1 << 30)) == 512 * 512
    assert all(start <= va < end for va, _, _ in leaves)
    assert [va for va, _, _ in leaves] == sorted({va for va, _, _ in leaves})
    assert {level for _, level, _ in leaves} <= set(lvls[1:])


def test_path_stops_at_the_leaf_and_faults_on_unreadable_tables() -> None:
    t, expected = sample()
    mem = t.memory()
    walker = t.walker(mem)
    path = walker.path(VA + 0x1000)
    assert [level for level, _, _ in path] == list(LEVELS[5])
    assert path[-1][2] == expected[1][2]
    assert [level for level, _, _ in walker.path(VA + (1 << 30))] == [Level.PGD, Level.P4D, Level.PUD]
    del mem.pages[t.table_of(VA, Level.PTE)]
    fresh = t.walker(mem)
    import drgn

    with pytest.raises(drgn.FaultError):
        fresh.path(VA)


# -- process and VMA enumeration on a changing or damaged kernel -----------------------


class _Value:
    def __init__(self, value: int) -> None:
        self._value = value

    def value_(self) -> int:
        return self._value

    def read_(self) -> "_Value":
        return self

    def __bool__(self) -> bool:
        return bool(self._value)


def test_a_vma_tree_that_never_ends_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from drgn_p2p import walk

    def vmas(mm):
        while True:
            yield SimpleNamespace(vm_start=_Value(0x1000), vm_end=_Value(0x2000))

    monkeypatch.setattr(walk, "for_each_vma", vmas)
    monkeypatch.setattr(walk, "MAX_VMAS", 500)
    process = walk.Process(9, "loop", _Value(0x9000), 1)
    with pytest.raises(ValueError, match="more than 500 VMAs: the VMA tree is corrupt or changing"):
        list(walk.process_vmas(SimpleNamespace(cache={}), process, start=1 << 40))


def test_a_shared_unreadable_table_counts_once_but_faults_every_range() -> None:
    """Two VMAs in one PTE table: each walk reports the fault, the walker counts one table and reads it once."""
    t, _ = sample()
    mem = t.memory()
    leaf_table = next(p for p, entries in t.tables.items() if pte(0x1000) in entries.values())
    del mem.pages[leaf_table]
    walker = t.walker(mem)
    _, first = split(walker.walk(VA, VA + 0x2000))
    _, second = split(walker.walk(VA + 0x2000, VA + 0x6000))
    assert [f.phys for f in first] == [leaf_table] and [f.phys for f in second] == [leaf_table]
    assert walker.faults == 1
    assert mem.faults == [leaf_table]  # not read again after it faulted


@pytest.mark.parametrize("levels,size", [(5, 1 << 48), (4, 1 << 39)])
def test_garbage_top_level_entry_spans_its_level(levels: int, size: int) -> None:
    """A non-table top-level entry is reported over the range it translates:
    2^48 bytes with 5-level paging, 2^39 with 4 (the P4D folded)."""
    from drgn_p2p.arch import x86_64 as X
    from drgn_p2p.records import EntryKind

    t = Tables(levels)
    bad = 0x2  # not present, not a table: never valid at the top level
    t.tables[t.root][(VA >> t.shifts[0]) & 511] = bad
    (item,) = list(t.walker(t.memory()).walk(VA, VA + 0x1000))
    va, level, raw = item
    leaf = X.decode_leaf(raw, va, level, t.layout)
    assert leaf.kind == EntryKind.GARBAGE and leaf.size == size
    assert va == VA & ~(size - 1)


def test_maple_entries_reads_each_node_once_in_index_order() -> None:
    """The VMA tree walked one node per read gives what drgn's mt_for_each()
    gives: the non-empty, non-zero leaf slots in index order, through an
    arange64 root and range64/leaf64 children (range64 with its end in
    meta.end or implied by a full or max pivot)."""
    from drgn_p2p.records import MapleTree
    from drgn_p2p.walk import _XA_ZERO_ENTRY, maple_entries

    # The 7.2 offsets of struct maple_node (mr64: pivot[15], slot[16], meta.end in slot[15]; ma64: pivot[9], slot[10]).
    tree = MapleTree(root=72, node_size=256, range64=(8, 15, 128, 16, 248), arange64=(8, 9, 80, 10, 240))
    memory = {}

    def node(address: int, kind: int, pivots, slots, end=None) -> int:
        data = bytearray(256)
        at_pivot, npivots, at_slot, nslots, at_end = tree.arange64 if kind == 3 else tree.range64
        struct.pack_into(f"<{len(pivots)}Q", data, at_pivot, *pivots)
        struct.pack_into(f"<{len(slots)}Q", data, at_slot, *slots)
        if end is not None:
            data[at_end] = end
        memory[address] = bytes(data)
        return address | (kind << 3) | 2  # an encoded node entry

    left = node(0x1000, 1, [0x0FFF, 0x1FFF, 0x2FFF], [0, 0xA1, _XA_ZERO_ENTRY, 0xA2], end=3)
    right = node(0x2000, 1, [0x5FFF], [0xB1, 0xB2], end=1)
    root = node(0x3000, 3, [0x3FFF], [left, right], end=1)
    reads = []

    def read(address: int, size: int) -> bytes:
        reads.append(address)
        return memory[address][:size]

    assert list(maple_entries(read, root, tree)) == [0xA1, 0xA2, 0xB1, 0xB2]
    assert reads == [0x3000, 0x1000, 0x2000]
    assert list(maple_entries(read, 0xFFFF_8880_0000_0000, tree)) == [0xFFFF_8880_0000_0000]  # a lone entry
    assert list(maple_entries(read, 0, tree)) == []
    bad = node(0x4000, 3, [0x3FFF], [left, right], end=12)
    with pytest.raises(ValueError, match="claims 13 slots of 10"):
        list(maple_entries(read, bad, tree))
    with pytest.raises(ValueError, match="unknown type 7"):
        list(maple_entries(read, 0x5000 | (7 << 3) | 2, tree))


@pytest.mark.parametrize("levels", [5, 4])
def test_consecutive_huge_leaves_come_as_one_slice(levels: int) -> None:
    """walk_tables() hands over each stretch of PMD leaves between empty and
    table entries as one TableSlice; walk() gives the same leaves one by one."""
    from drgn_p2p.walk import TableSlice

    t = Tables(levels)
    huge = [(VA + (i << 21), (0x4_0000 + 512 * i) << 12 | HUGE_BITS) for i in (0, 1, 2, 5, 6)]
    for va, raw in huge:
        t.map(va, raw, Level.PMD)
    t.map(VA + (3 << 21), pte(0x1000))  # entry 3 is a table; entry 4 is empty
    mem = t.memory()
    items = list(t.walker(mem).walk_tables(VA, VA + (1 << 30)))
    shapes = [(type(i).__name__, i.level, i.first, i.last) if isinstance(i, TableSlice) else i for i in items]
    assert shapes == [("TableSlice", Level.PMD, 0, 2), ("TableSlice", Level.PTE, 0, 511), ("TableSlice", Level.PMD, 5, 6)]
    leaves = [leaf for va, raw in huge for leaf in [(va, Level.PMD, raw)]]
    leaves.insert(3, (VA + (3 << 21), Level.PTE, pte(0x1000)))
    assert list(t.walker(mem).walk(VA, VA + (1 << 30))) == leaves
    # A range that starts inside the stretch cuts the slice.
    first = next(iter(t.walker(mem).walk_tables(VA + (1 << 21), VA + (3 << 21))))
    assert (first.level, first.first, first.last) == (Level.PMD, 1, 2)


def test_kernel_image_names_outlive_an_audit_and_module_names_do_not() -> None:
    """Names of kernel-image addresses and hooks of read-only vm_ops are kept
    for the next audit; a module's (which may be unloaded, and its address
    reused) are looked up again."""
    from types import SimpleNamespace

    from drgn_p2p.walk import _NAMES_KEY, _ops_hooks, _symbol_name, share_names, unshare_names

    image = {"_stext": 0xFFFF_FFFF_8100_0000, "_end": 0xFFFF_FFFF_8400_0000,
             "__start_rodata": 0xFFFF_FFFF_8200_0000, "__end_rodata": 0xFFFF_FFFF_8300_0000}
    looked_up = []

    def symbol(what):
        looked_up.append(what)
        if isinstance(what, str):
            return SimpleNamespace(address=image[what])
        return SimpleNamespace(name=f"sym_{what:x}")

    prog = SimpleNamespace(cache={}, symbol=symbol)
    text, module = 0xFFFF_FFFF_8150_0000, 0xFFFF_FFFF_C000_1000
    for _ in range(2):
        share_names(prog)
        names = prog.cache[_NAMES_KEY]
        assert _symbol_name(prog, text, names.symbols) == f"sym_{text:x}"
        assert _symbol_name(prog, module, names.symbols) == f"sym_{module:x}"
        names.hooks[0xFFFF_FFFF_8250_0000] = "ro hooks"
        names.hooks[module] = "module hooks"
        unshare_names(prog)
    assert looked_up.count(text) == 1 and looked_up.count(module) == 2
    share_names(prog)
    hooks = prog.cache[_NAMES_KEY].hooks
    assert _ops_hooks(prog, 0xFFFF_FFFF_8250_0000, hooks) == "ro hooks"
    assert module not in hooks
