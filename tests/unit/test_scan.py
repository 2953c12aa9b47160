# SPDX-License-Identifier: GPL-2.0-or-later
"""The whole-table fast path (drgn_p2p.scan) gives exactly the runs of the
entry-by-entry path, and is taken for the tables it exists for."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from drgn_p2p.arch import x86_64 as X
from drgn_p2p.classify import Classifier, Pagemap
from drgn_p2p.coalesce import coalesce, coalesce_segments
from drgn_p2p.records import PageKind
from drgn_p2p.scan import PteScanner
from drgn_p2p.walk import TableSlice

from .layouts import HUGE_ZERO_PFN, L61, L72, VM_FLAGS_ANON, VM_FLAGS_PCIBAR, ZERO_PFN, make_vma

BASE = 0x7F00_0020_0000  # 2 MiB aligned: entry i maps BASE + i * 4096
NX = 1 << 63
ANON = 0x67 | NX  # PRESENT RW USER ACCESSED DIRTY
LAYOUTS = [L61, L72]

# RAM 0x1000-0x80000 with an fsdax pgmap at 0x40000-0x48000; a BAR at 0xC0000.
PGMAP = Pagemap(0xFFFF_8880_0100_0000, "FS_DAX", 0x40000, 0x48000, None, None, True, PageKind.FSDAX)
MEMMAP = [(0x1000, 0x80000)]
IOMEM = [(0x1000 << 12, 0x80000 << 12, "System RAM"), (0xC0000 << 12, 0xC1000 << 12, "0000:00:04.0")]


def classifier(layout):
    return Classifier.from_tables(layout, [PGMAP], list(MEMMAP), list(IOMEM))


def table(entries, first=0, last=511):
    data = struct.pack("<512Q", *entries)
    return TableSlice(BASE, data, first, last, 12)


def slow_runs(piece, vma, layout):
    cls = classifier(layout)
    items = []
    for va, level, raw in piece.leaves():
        leaf = X.decode_leaf(raw, va, level, layout)
        items.append((leaf, cls.classify(leaf.pfn)))
    return [(r.first, r.count, r.page) for r in coalesce(vma, items)]


def fast_runs(piece, vma, layout):
    cls = classifier(layout)
    segment = PteScanner(layout, cls, vma).uniform_run(piece)
    if segment is None:
        return None
    return [(r.first, r.count, r.page) for r in coalesce_segments(vma, [segment])]


def check(entries, vma, layout, first=0, last=511):
    """The fast path, when it answers, answers like the slow path."""
    piece = table(entries, first, last)
    if not any(entries[first:last + 1]):
        return None
    fast = fast_runs(piece, vma, layout)
    if fast is not None:
        assert fast == slow_runs(piece, vma, layout)
    return fast


def test_anonymous_table_is_one_run():
    vma = make_vma(VM_FLAGS_ANON, pgoff=0x7F00_0000_0000 >> 12)
    entries = [ANON | ((0x5000 + 7 * i) << 12) for i in range(512)]
    for layout in LAYOUTS:
        runs = check(entries, vma, layout)
        assert runs is not None and runs[0][1] == 512


def test_accessed_and_dirty_do_not_split():
    vma = make_vma(VM_FLAGS_ANON, pgoff=0x7F00_0000_0000 >> 12)
    entries = [(ANON & ~(0x60 if i % 3 else 0)) | ((0x5000 + i) << 12) for i in range(512)]
    assert check(entries, vma, L72)[0][1] == 512


def test_linear_pfnmap_table_is_one_run():
    # pgoff makes the BAR PFNs exactly linear.
    vma = make_vma(VM_FLAGS_PCIBAR, start=BASE, end=BASE + (2 << 20), pgoff=0xC0000)
    entries = [0x27B | (1 << 9) | ((0xC0000 + i) << 12) for i in range(512)]
    runs = check(entries, vma, L72)
    assert runs is not None and runs[0][1] == 512


def test_mixed_tables_fall_back():
    vma = make_vma(VM_FLAGS_ANON)
    straddle = [ANON | ((0x47F00 + i) << 12) for i in range(512)]  # crosses the pgmap end
    assert check(straddle, vma, L72) is None
    holes = [ANON | ((0x5000 + i) << 12) if i % 2 else 0 for i in range(512)]
    assert check(holes, vma, L72) is None
    special = [ANON | ((0x5000 + i) << 12) | ((i == 300) << 9) for i in range(512)]
    assert check(special, vma, L72) is None
    zero = [ANON | (ZERO_PFN << 12)] * 511 + [ANON | (0x5000 << 12)]
    assert check(zero, vma, L72) is None


def test_partly_linear_table_falls_back():
    vma = make_vma(VM_FLAGS_PCIBAR, start=BASE, end=BASE + (2 << 20), pgoff=0xC0000)
    entries = [0x27B | ((0xC0000 + i + (i >= 256)) << 12) for i in range(512)]
    assert check(entries, vma, L72) is None


def test_table_whose_linear_range_overlaps_but_no_entry_is_linear_is_one_run():
    # A file mapping's page cache: pgoff puts its linear PFNs in the same RAM
    # span as the pages, but no page sits at its linear PFN.
    vma = make_vma(VM_FLAGS_ANON, start=BASE, end=BASE + (2 << 20), pgoff=0x5001)
    entries = [ANON | ((0x5000 + 3 * i) << 12) for i in range(512)]
    runs = check(entries, vma, L72)
    assert runs is not None and runs[0][1] == 512


# PFN regimes that put entries near every classification boundary.
_PFNS = st.sampled_from([0x1000, 0x3FFFF, 0x40000, 0x47FFF, 0x48000, 0x7FFFF, 0x80000,
                         0xC0000, ZERO_PFN, ZERO_PFN - 1, ZERO_PFN + 1, 0x5000,
                         HUGE_ZERO_PFN - 1, HUGE_ZERO_PFN, HUGE_ZERO_PFN + 511, HUGE_ZERO_PFN + 512])
_FLAGS = st.sampled_from([ANON, ANON & ~0x60, ANON & ~0x2, ANON | (1 << 9), ANON | (1 << 57),
                          ANON | (1 << 58), 0x100 | 0x66, 0])


#: A table of entries base_pfn + step * i with *flags*, some entries flipped to other flags and PFNs.
_TABLE = dict(base_pfn=_PFNS, step=st.sampled_from([0, 1, 2]), flags=_FLAGS, first=st.integers(0, 511),
              length=st.integers(1, 512), layout=st.sampled_from(LAYOUTS))


def _entries(base_pfn, step, flags, flips):
    entries = [flags | ((base_pfn + step * i) << 12) if flags else 0 for i in range(512)]
    for i, f, pfn in flips:
        entries[i] = f | (pfn << 12) if f else 0
    return entries


@settings(max_examples=300, deadline=None)
@given(**_TABLE, flips=st.lists(st.tuples(st.integers(0, 511), _FLAGS, _PFNS), max_size=3),
       linear_at=st.sampled_from([None, 0, 5, "off"]))
def test_fast_path_equals_slow_path(base_pfn, step, flags, flips, first, length, linear_at, layout):
    last = min(511, first + length - 1)
    entries = _entries(base_pfn, step, flags, flips)
    # pgoff such that entry linear_at is at its linear PFN (when step is 1, all are).
    # "off": the linear PFNs one above the first entry's, in its span.
    pgoff = (0x7F00_0000_0000 >> 12 if linear_at is None else base_pfn + 1 if linear_at == "off"
             else base_pfn + step * linear_at - linear_at)
    pgoff = max(pgoff, 0)
    vma = make_vma(VM_FLAGS_PCIBAR, start=BASE, end=BASE + (2 << 20), pgoff=pgoff)
    check(entries, vma, layout, first, last)


class _OneSlice:
    """A walker that hands over one PTE slice."""

    def __init__(self, piece) -> None:
        self.piece = piece

    def walk_tables(self, start, end):
        yield self.piece


@settings(max_examples=300, deadline=None)
@given(**_TABLE, flips=st.lists(st.tuples(st.integers(0, 511), _FLAGS, _PFNS), max_size=6),
       holes=st.lists(st.tuples(st.integers(0, 511), st.integers(1, 40)), max_size=4), linear=st.booleans())
def test_a_table_judged_in_pieces_gives_the_runs_of_its_leaves(base_pfn, step, flags, flips, holes, first, length,
                                                               linear, layout):
    """The audit's segments of a PTE slice (whole, then each stretch between
    empty entries, then leaf by leaf) coalesce to the runs of its leaves."""
    from drgn_p2p.pipeline import _segments

    last = min(511, first + length - 1)
    entries = _entries(base_pfn, step, flags, flips)
    for at, n in holes:
        entries[at:at + n] = [0] * len(entries[at:at + n])
    if not any(entries[first:last + 1]):
        return
    piece = table(entries, first, last)
    vma = make_vma(VM_FLAGS_PCIBAR, start=BASE, end=BASE + (2 << 20), pgoff=base_pfn if linear else 0x7F00_0000_0000 >> 12)
    faults = []
    segments = _segments(_OneSlice(piece), vma, layout, classifier(layout), BASE, BASE + (2 << 20), faults)
    assert [(r.first, r.count, r.page) for r in coalesce_segments(vma, segments)] == slow_runs(piece, vma, layout)
    assert faults == []


def test_stretches_between_empty_entries_are_judged_whole():
    from drgn_p2p.scan import pieces

    entries = [0] * 512
    entries[3:10] = [ANON | ((0x2000 + 7 * i) << 12) for i in range(7)]  # scattered RAM pages: one run
    entries[20] = ANON | (0x3000 << 12)
    piece = table(entries, 0, 511)
    assert [(p.first, p.last) for p in pieces(piece)] == [(3, 9), (20, 20)]
    assert [(p.first, p.last) for p in pieces(table(entries, 5, 20))] == [(5, 9), (20, 20)]


# Entries whose zero bytes straddle entry boundaries: a zero high half next to
# a zero low half is eight zero bytes that are not an empty entry.
_BYTE_PATTERNS = st.sampled_from([0, 1, 0xFF << 56, 0xFF, 0x00FF_FF00_0000_0000, 1 << 63, 0x8000_0000, 0x100])


@given(st.lists(_BYTE_PATTERNS, min_size=1, max_size=64), st.data())
@settings(max_examples=300, deadline=None)
def test_pieces_are_the_maximal_stretches_of_non_empty_entries(values, data):
    from drgn_p2p.scan import pieces

    entries = values + [0] * (512 - len(values))
    first = data.draw(st.integers(0, len(values) - 1))
    last = data.draw(st.integers(first, 511))
    expected, start = [], None
    for i in range(first, last + 1):
        if entries[i] and start is None:
            start = i
        elif not entries[i] and start is not None:
            expected.append((start, i - 1))
            start = None
    if start is not None:
        expected.append((start, last))
    assert [(p.first, p.last) for p in pieces(table(entries, first, last))] == expected


# -- stretches of huge leaves (PMD/PUD), both architectures -------------------

from drgn_p2p.arch import for_layout  # noqa: E402
from drgn_p2p.records import Level, level_shift  # noqa: E402

from .layouts import A72, A72_16K, L612  # noqa: E402

_X86_PMD = 0xE7 | NX  # PRESENT RW USER ACCESSED DIRTY PSE
_ARM_BLOCK = 0x1 | (1 << 10) | (1 << 51)  # VALID, block, AF, WRITE


def _huge_entry(layout, level, flags, pfn, low_bits=0):
    """A leaf at *level* mapping *pfn*, with *low_bits* (below the leaf's alignment) set too."""
    if flags is None:
        return 0
    return flags | (pfn << layout.page_shift) | (low_bits << layout.page_shift)


def _slow(piece, vma, layout, cls):
    decode = for_layout(layout).decode_leaf
    items = [(leaf, cls.classify(leaf.pfn)) for leaf in (decode(raw, va, lvl, layout) for va, lvl, raw in piece.leaves())]
    return [(r.first, r.count, r.page) for r in coalesce(vma, items)]


@settings(max_examples=300, deadline=None)
@given(layout=st.sampled_from([L61, L72, L612, A72, A72_16K]), level=st.sampled_from([Level.PMD, Level.PUD]),
       base=st.sampled_from([0x1000, 0x3E000, 0x40000, 0x47E00, 0x2E600, 0x7FE00, 0xC0000, 0x3DE00]),
       step=st.sampled_from([0, 1, 2, 3]), n=st.integers(1, 40),
       flips=st.lists(st.tuples(st.integers(0, 39), st.sampled_from(["flags", "pfn", "low", "empty"])), max_size=3),
       linear=st.booleans())
def test_huge_leaf_stretches_equal_the_slow_path(layout, level, base, step, n, flips, linear):
    """A stretch of PMD/PUD leaves is judged whole exactly when its leaves make one run."""
    arm = layout.arch == "arm64"
    flags = _ARM_BLOCK if arm else _X86_PMD
    pages = 1 << (level_shift(level, layout.page_shift) - layout.page_shift)
    pfns = [base + step * pages * i for i in range(n)]
    entries = [_huge_entry(layout, level, flags, p) for p in pfns]
    for i, what in flips:
        if i >= n:
            continue
        if what == "flags":
            entries[i] ^= 1 << 51 if arm else 0x2  # writable
        elif what == "pfn":
            entries[i] = _huge_entry(layout, level, flags, HUGE_ZERO_PFN)
        elif what == "low":
            entries[i] |= 1 << layout.page_shift  # PAT_LARGE on x86, RES0 on arm64: not the PFN
        else:
            entries[i] = 0
    if not any(entries):
        return
    shift = level_shift(level, layout.page_shift)
    base_va = 1 << 46
    data = struct.pack(f"<{len(entries)}Q", *entries)
    vma = make_vma(VM_FLAGS_PCIBAR, start=base_va, end=base_va + (n << shift), pgoff=base if linear else 1 << 34)
    cls = Classifier.from_tables(layout, [PGMAP], list(MEMMAP), list(IOMEM))
    piece = TableSlice(base_va, data, 0, n - 1, shift, level)
    slow = _slow(piece, vma, layout, cls)
    segment = PteScanner(layout, cls, vma).uniform_run(piece)
    if segment is not None:
        assert [(r.first, r.count, r.page) for r in coalesce_segments(vma, [segment])] == slow
    # Every stretch of alike leaves is judged whole: one segment per run.
    if len(slow) == 1 and all(entries):
        assert segment is not None


def test_thp_pages_on_both_sides_of_the_zero_pages_are_one_run():
    """Random RAM pages of a THP range lie in different spans of the
    classification (the zero pages cut RAM), and still make one run."""
    vma = make_vma(VM_FLAGS_ANON)
    pfns = [0x1000, 0x7FE00, 0x2E600, 0x3E200, 0x20000, 0x3DE00]  # below and above ZERO_PFN, HUGE_ZERO_PFN
    entries = [_X86_PMD | (p << 12) for p in pfns]
    piece = TableSlice(vma.start, struct.pack("<6Q", *entries), 0, 5, 21, Level.PMD)
    for layout in LAYOUTS:
        cls = classifier(layout)
        segment = PteScanner(layout, cls, vma).uniform_run(piece)
        assert segment is not None and segment[2] == 6
        assert [(r.first, r.count, r.page) for r in coalesce_segments(vma, [segment])] == _slow(piece, vma, layout, cls)
    with_huge_zero = TableSlice(vma.start, struct.pack("<6Q", *entries[:5], _X86_PMD | (HUGE_ZERO_PFN << 12)),
                                0, 5, 21, Level.PMD)
    assert PteScanner(L72, classifier(L72), vma).uniform_run(with_huge_zero) is None


def test_ram_pages_around_the_zero_pages_are_one_run_without_classifying_each():
    """A table of RAM pages on both sides of the zero pages is proven one run
    with whole-table operations; one page that is the zero page (or in the
    huge zero page) splits it."""
    vma = make_vma(VM_FLAGS_ANON)
    around = [ANON | ((ZERO_PFN - 300 + 97 * i) % 0x7F000 + 0x1000 << 12) for i in range(512)]
    around = [e if (e >> 12) & 0xFFFFFFFFF not in (ZERO_PFN,) and not HUGE_ZERO_PFN <= (e >> 12) & 0xFFFFFFFFF < HUGE_ZERO_PFN + 512
              and not 0x40000 <= (e >> 12) & 0xFFFFFFFFF < 0x48000 else ANON | (0x5000 << 12) for e in around]
    for layout in LAYOUTS:
        cls = classifier(layout)
        scanner = PteScanner(layout, cls, vma)
        scanner._one_info = None  # the whole-table proof must not need it
        segment = scanner.uniform_run(table(around))
        assert segment is not None and segment[2] == 512
        assert [(r.first, r.count, r.page) for r in coalesce_segments(vma, [segment])] == slow_runs(table(around), vma, layout)
        for bad in (ZERO_PFN, HUGE_ZERO_PFN + 7):
            broken = around[:200] + [ANON | (bad << 12)] + around[201:]
            assert PteScanner(layout, cls, vma).uniform_run(table(broken)) is None


class _Slices:
    """A walker that hands over given slices, in order."""

    def __init__(self, slices) -> None:
        self.slices = slices

    def walk_tables(self, start, end):
        yield from self.slices


@settings(max_examples=200, deadline=None)
@given(tables=st.lists(st.tuples(_PFNS, st.sampled_from([0, 1, 7]), st.sampled_from([ANON, ANON & ~0x2, ANON | (1 << 9)]),
                                 st.lists(st.tuples(st.integers(0, 511), _FLAGS, _PFNS), max_size=2)),
                       min_size=1, max_size=4),
       linear=st.booleans(), layout=st.sampled_from(LAYOUTS))
def test_consecutive_tables_continue_one_run_as_their_leaves_do(tables, linear, layout):
    """Slices of consecutive PTE tables that continue the run before them are
    counted into it without a leaf; the runs are those of the single leaves."""
    from drgn_p2p.pipeline import _segments

    slices, leaves = [], []
    for t, (base_pfn, step, flags, flips) in enumerate(tables):
        entries = _entries(base_pfn + 512 * step * t, step, flags, flips)
        piece = TableSlice(BASE + (t << 21), struct.pack("<512Q", *entries), 0, 511, 12)
        slices.append(piece)
        leaves.extend(piece.leaves())
    if not leaves:
        return
    end = BASE + (len(tables) << 21)
    vma = make_vma(VM_FLAGS_PCIBAR, start=BASE, end=end, pgoff=tables[0][0] if linear else 0x7F00_0000_0000 >> 12)
    cls = classifier(layout)
    decoded = [X.decode_leaf(raw, va, lvl, layout) for va, lvl, raw in leaves]
    slow = [(r.first, r.count, r.page) for r in coalesce(vma, [(leaf, cls.classify(leaf.pfn)) for leaf in decoded])]
    segments = list(_segments(_Slices(slices), vma, layout, cls, BASE, end, []))
    assert [(r.first, r.count, r.page) for r in coalesce_segments(vma, segments)] == slow


def test_a_table_continuing_the_one_before_decodes_no_leaf():
    vma = make_vma(VM_FLAGS_ANON)
    cls = classifier(L72)
    scanner = PteScanner(L72, cls, vma)
    first = TableSlice(BASE, struct.pack("<512Q", *[ANON | ((0x5000 + 3 * i) << 12) for i in range(512)]), 0, 511, 12)
    second = TableSlice(BASE + (2 << 20), struct.pack("<512Q", *[ANON | ((0x9000 + 5 * i) << 12) for i in range(512)]),
                        0, 511, 12)
    read_only = TableSlice(BASE + (4 << 20), struct.pack("<512Q", *[(ANON & ~0x2) | ((0x9000 + i) << 12) for i in range(512)]),
                           0, 511, 12)
    a, b, c = scanner.uniform_run(first), scanner.uniform_run(second), scanner.uniform_run(read_only)
    assert a[0] is not None and b[0] is None and b[2] == 512 and c[0] is not None
    assert [r.count for r in coalesce_segments(vma, [a, b, c])] == [1024, 512]
