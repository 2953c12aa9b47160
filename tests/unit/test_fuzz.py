# SPDX-License-Identifier: GPL-2.0-or-later
"""Garbage in page tables: hypothesis feeds the x86-64 decoder random and
adversarial 64-bit entries at every level and on every lab kernel's layout
(it must never raise, and what it returns must be well formed), and feeds the
walker random physical memories with loops (tables pointing at themselves or
an ancestor), PFNs past the end of memory, unreadable tables and tables that
change between reads (no exception escapes, the walk ends within its read
bound, and unreadable tables come out as TableFaults)."""

import random
from typing import Dict, List

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from drgn_p2p.arch import x86_64 as X
from drgn_p2p.records import LEVEL_SHIFT, EntryKind, Layout, Leaf, Level
from drgn_p2p.walk import PageTableWalker, TableFault

from .fakephys import PAGE, FakePhys, page, table_entry
from .layouts import L61, L61_DP, L72, L72_4LVL, L612, L612_DP, PFN_MASK, make_layout
from .test_walk import LEVELS, SHIFTS, read_bound

M64 = (1 << 64) - 1
LAYOUTS = [L61, L61_DP, L612, L612_DP, L72, L72_4LVL, make_layout((6, 12), sme_mask=1 << 47)]
ALL_LEVELS = list(Level)

# -- entries --------------------------------------------------------------------

#: Bits that steer the decoder: present, protnone/global, PSE, special, the
#: devmap bits of each kernel, the swap type field, NX.
_STEERING = [0, 1, 7, 8, 9, 57, 58, 59, 60, 61, 62, 63]


def _swap_entry(stype: int, offset: int, flags: int) -> int:
    return (((~offset << 14) & M64) >> 5) | (stype << 59) | flags


entries = st.one_of(
    st.integers(min_value=0, max_value=M64),
    # one or two set bits, all bits, all but one
    st.integers(min_value=0, max_value=63).map(lambda b: 1 << b),
    st.tuples(st.integers(0, 63), st.integers(0, 63)).map(lambda t: (1 << t[0]) | (1 << t[1])),
    st.just(M64),
    st.integers(0, 63).map(lambda b: M64 ^ (1 << b)),
    # a real-looking leaf with random steering bits on or off
    st.tuples(st.integers(0, (1 << 40) - 1), st.sets(st.sampled_from(_STEERING))).map(
        lambda t: (t[0] << 12) | 0x67 | sum(1 << b for b in t[1])
    ),
    # every swap type with adversarial offsets and flag bits
    st.tuples(
        st.integers(0, 31),
        st.one_of(st.integers(0, (1 << 50) - 1), st.sampled_from([0, 1, (1 << 50) - 1, (1 << 40) - 1, 1 << 40])),
        st.integers(0, 0xFF).map(lambda f: f & ~0x1),
    ).map(lambda t: _swap_entry(*t)),
)


def _check_leaf(leaf, raw: int, va: int, level: Level) -> None:
    if raw == 0:
        assert leaf is None
        return
    assert isinstance(leaf, Leaf)
    assert (leaf.raw, leaf.va, leaf.level) == (raw, va, level)
    assert isinstance(leaf.kind, EntryKind)
    assert leaf.pfn is None or 0 <= leaf.pfn < (1 << 52)
    if leaf.kind in (EntryKind.PRESENT, EntryKind.PROTNONE):
        assert leaf.pfn is not None
    if level > Level.PUD:
        assert leaf.kind == EntryKind.GARBAGE


@settings(max_examples=300, deadline=None)
@given(raw=entries, level=st.sampled_from(ALL_LEVELS), layout=st.sampled_from(LAYOUTS),
       va=st.integers(0, (1 << 57) - 1))
def test_decode_and_describe_never_raise(raw: int, level: Level, layout: Layout, va: int) -> None:
    leaf = X.decode_leaf(raw, va, level, layout)
    _check_leaf(leaf, raw, va, level)
    names, cache = X.describe(raw, level, layout)
    assert isinstance(names, list) and all(isinstance(n, str) and n for n in names)
    assert cache in X.PAT_CACHE_MODES or cache == ""
    assert (names == []) == (raw == 0)
    table = X.is_table(raw, level)
    assert isinstance(table, bool)
    if table:
        assert level != Level.PTE and raw & 1
    assert 0 <= X.table_phys(raw, layout) <= layout.pfn_mask
    assert X.cache_mode(raw, level) in X.PAT_CACHE_MODES


def test_decode_every_single_bit_and_its_complement_at_every_level() -> None:
    """The exhaustive corner of the space hypothesis samples: 2 × 64 values × 5 levels × 7 layouts."""
    for layout in LAYOUTS:
        for level in ALL_LEVELS:
            for bit in range(64):
                for raw in (1 << bit, M64 ^ (1 << bit)):
                    _check_leaf(X.decode_leaf(raw, 0, level, layout), raw, 0, level)
                    X.describe(raw, level, layout)


# -- walks over random physical memories -----------------------------------------

#: Physical pages the random tables live in; pointers may also aim just past them.
_NPAGES = 6
_BASE = 0x20_0000


def _pointer_targets() -> st.SearchStrategy[int]:
    inside = st.integers(0, _NPAGES - 1).map(lambda i: _BASE + i * PAGE)  # self, ancestors, siblings
    outside = st.one_of(
        st.integers(_NPAGES, _NPAGES + 3).map(lambda i: _BASE + i * PAGE),  # just past memory
        st.integers(0, PFN_MASK >> 12).map(lambda pfn: pfn << 12),  # anywhere up to 2^52
        st.just(PFN_MASK & ~0xFFF),
    )
    return st.one_of(inside, inside, outside)


table_values = st.one_of(
    _pointer_targets().map(table_entry),  # a table entry
    _pointer_targets().map(lambda phys: phys | 0xE7),  # a huge leaf (PSE) at PMD/PUD
    entries,  # anything at all
)

memories = st.lists(
    st.dictionaries(st.integers(0, 511), table_values, min_size=1, max_size=16),
    min_size=_NPAGES,
    max_size=_NPAGES,
)


@st.composite
def ranges(draw, levels: int):
    """A walk range of at most 8 MiB somewhere in the address space the tables map."""
    top = 1 << (57 if levels == 5 else 48)
    start = draw(st.one_of(st.integers(0, top - 1), st.integers(0, 511).map(lambda i: i << (48 if levels == 5 else 39))))
    length = draw(st.integers(1, 8 << 20))
    return start, min(top, start + length)


def aimed_range(draw, tables: List[Dict[int, int]], root: int, levels: int):
    """A walk range around a path of table entries laid from *root* down to a
    PTE table, through random pages of the memory (so often the same page
    twice: a loop), and written into *tables*; random tables alone are too
    sparse for a random range to reach the lower levels."""
    shifts = SHIFTS[levels]
    va = 0
    phys = root
    for shift in shifts[:-1]:
        i = draw(st.integers(0, 511))
        target = _BASE + draw(st.integers(0, _NPAGES - 1)) * PAGE
        tables[(phys - _BASE) // PAGE][i] = table_entry(target)
        va |= i << shift
        phys = target
    i = draw(st.integers(0, 511))
    tables[(phys - _BASE) // PAGE][i] = draw(entries.filter(bool))
    va |= i << shifts[-1]
    top = 1 << (57 if levels == 5 else 48)
    start = min(top - 1, va + draw(st.integers(0, 0xFFF)))
    return start, min(top, start + draw(st.integers(1, 8 << 20)))


def _memory(tables: List[Dict[int, int]], unreadable: List[int]) -> FakePhys:
    mem = FakePhys()
    for i, entries_ in enumerate(tables):
        if i not in unreadable:
            mem.pages[_BASE + i * PAGE] = page(entries_)
    return mem


def _check_walk(items, mem: FakePhys, walker: PageTableWalker, start: int, end: int, levels: int) -> None:
    shifts = SHIFTS[levels]
    bound = read_bound(start, end, shifts)
    assert len(mem.reads) <= bound, (len(mem.reads), bound)
    faults = [i for i in items if isinstance(i, TableFault)]
    leaves = [i for i in items if not isinstance(i, TableFault)]
    assert len(faults) == walker.faults == len(mem.faults)
    assert sorted(f.phys for f in faults) == sorted(mem.faults)
    for f in faults:
        assert f.phys not in mem.pages or f.phys in mem.faults
        assert f.level in LEVELS[levels]
        assert start <= f.va < end
    # A leaf is reported at the level whose span it translates: with 4-level
    # paging a top-level entry spans 2^39 bytes, a P4D entry's span.
    leaf_levels = tuple(Level.P4D if (lvl, sh) == (Level.PGD, 39) else lvl for lvl, sh in zip(LEVELS[levels], shifts))
    span = dict(zip(leaf_levels, shifts))
    assert all(span[lvl] == LEVEL_SHIFT[lvl] for lvl in leaf_levels)
    previous = -1
    for va, level, raw in leaves:
        assert raw != 0
        assert level in leaf_levels
        assert va % (1 << span[level]) == 0
        assert va < end and va + (1 << span[level]) > start  # maps part of the range
        assert va > previous  # address order, each entry once
        previous = va
    # at most one leaf per 4 KiB page of the range, plus the huge leaves covering its ends
    assert len(leaves) <= ((end - start + PAGE - 1) >> 12) + 2 * levels


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=memories, levels=st.sampled_from([5, 4]), data=st.data(),
       unreadable=st.lists(st.integers(0, _NPAGES - 1), max_size=2))
def test_walk_over_random_tables_terminates_and_never_raises(tables, levels, data, unreadable) -> None:
    root = _BASE + data.draw(st.integers(0, _NPAGES - 1)) * PAGE
    if data.draw(st.integers(0, 3)):
        start, end = aimed_range(data.draw, tables, root, levels)
    else:
        start, end = data.draw(ranges(levels))
    mem = _memory(tables, unreadable)
    layout = L72 if levels == 5 else L72_4LVL
    walker = PageTableWalker(mem.read, layout, root)
    items = list(walker.walk(start, end))
    _check_walk(items, mem, walker, start, end, levels)
    if root in mem.faults:
        assert items == [TableFault(LEVELS[levels][0], start, root, items[0].message)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=memories, levels=st.sampled_from([5, 4]), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_walk_over_tables_changing_between_reads(tables, levels, data, seed) -> None:
    """After every read the 'kernel' rewrites, frees or reallocates a random table."""
    start, end = aimed_range(data.draw, tables, _BASE, levels)
    rng = random.Random(seed)
    strategy_values = [v for t in tables for v in t.values()] or [0]

    def mutate(mem: FakePhys, phys: int) -> None:
        victim = _BASE + rng.randrange(_NPAGES) * PAGE
        action = rng.randrange(4)
        if action == 0:
            mem.pages.pop(victim, None)  # freed
        elif action == 1:
            mem.pages[victim] = page({})  # zapped
        elif action == 2:
            mem.pages[victim] = page({rng.randrange(512): rng.choice(strategy_values) for _ in range(8)})
        # action 3: unchanged

    mem = _memory(tables, [])
    mem.on_read = mutate
    walker = PageTableWalker(mem.read, L72 if levels == 5 else L72_4LVL, _BASE)
    items = list(walker.walk(start, end))
    _check_walk(items, mem, walker, start, end, levels)


@settings(max_examples=100, deadline=None)
@given(levels=st.sampled_from([5, 4]), data=st.data())
def test_worst_case_self_loops_read_one_table_per_level(levels, data) -> None:
    """Every entry of the only table points back at it: the walk descends
    through it at every level and, thanks to the per-level cache of the last
    table read, reads it once per level."""
    start, end = data.draw(ranges(levels))
    assume(end - start <= 8 << 20)
    mem = FakePhys({_BASE: page({i: table_entry(_BASE) for i in range(512)})})
    walker = PageTableWalker(mem.read, L72 if levels == 5 else L72_4LVL, _BASE)
    items = list(walker.walk(start, end))
    assert not [i for i in items if isinstance(i, TableFault)]
    assert len(mem.reads) == levels
    assert len(items) == ((end - 1) >> 12) - (start >> 12) + 1  # every page of the range is "mapped"
    _check_walk(items, mem, walker, start, end, levels)


@pytest.mark.parametrize("levels", [5, 4])
def test_the_read_bound_is_reached(levels: int) -> None:
    """Distinct tables at every entry defeat the cache: the bound is tight."""
    shifts = SHIFTS[levels]
    start, end = 0, 3 << shifts[-2]  # three PMD entries' worth
    mem = FakePhys()
    # depth d table at phys (d+1) * 0x100000 + i * PAGE for entry i of its parent
    root = 0x100000
    mem.pages[root] = page({0: table_entry(0x200000)})
    for depth in range(1, levels - 1):
        mem.pages[(depth + 1) * 0x100000] = page({0: table_entry((depth + 2) * 0x100000)})
    pmd = levels * 0x100000 - 0x100000
    mem.pages[pmd] = page({i: table_entry(0x800000 + i * PAGE) for i in range(3)})
    for i in range(3):
        mem.pages[0x800000 + i * PAGE] = page({0: (0x1000 + i) << 12 | 0x67})
    walker = PageTableWalker(mem.read, L72 if levels == 5 else L72_4LVL, root)
    leaves = list(walker.walk(start, end))
    assert [va for va, _, _ in leaves] == [0, 1 << 21, 2 << 21]
    assert len(mem.reads) == read_bound(start, end, shifts) == levels + 2
