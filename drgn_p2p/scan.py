# SPDX-License-Identifier: GPL-2.0-or-later
"""
Scan
----

Judge a whole PTE table, or a stretch of huge leaves, at once when its entries are alike.

Most PTE tables of a real process hold up to 512 present entries that differ
only in their PFN and in bits no rule reads (accessed, dirty): anonymous
memory, page cache, a PCI BAR; a THP, DAX or huge PFN range is a stretch of
PMD leaves alike in the same way. Decoding, classifying and coalescing them
one by one would produce a single run. :meth:`PteScanner.uniform_run` proves
that with a handful of operations on the slice as one big integer, one
64-bit lane per entry (SWAR: "SIMD within a register"), and returns the
run's first leaf, its page info and its length; it returns ``None`` whenever
the proof fails, and the caller then takes the entry-by-entry path. So the
fast path never changes a result: it only skips work whose outcome it has
shown.

A slice of entries ``first..last`` at one level is one run when

1. every entry is present (``_PAGE_PRESENT``, arm64 VALID) — hence non-empty,
   so the entries are contiguous in virtual address space — and all agree in
   the bits that decide the decoded kind, special, devmap and writable
   (``arch.run_bits``);
2. every PFN lies in one interval of :meth:`Classifier.span`, over which
   ``classify()`` returns one and the same :class:`PfnInfo`; or, when some
   do not (random RAM pages on both sides of the zero pages, which cut RAM
   into spans), each PFN's ``classify()`` is that same info;
3. either no PFN can be the VMA's linear PFN (``vm_pgoff + (va - vm_start) >>
   PAGE_SHIFT``, entry *j* of a huge level ``j × pages-per-leaf`` on from the
   first: the linear range misses the interval of step 2), or every PFN is
   (the slice is an exact arithmetic progression), or none is (no lane of the
   PFNs XOR the progression is zero).

Lane arithmetic stays exact because a PFN field (PFN << 12) is below 2**52
(``pfn_mask``), so adding a constant below 2**52 to a lane never carries into
the next one; bit 52 of the sum tells whether the lane reached the constant's
complement.
"""

import functools
import struct
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from .arch import for_layout
from .classify import Classifier
from .records import Layout, Leaf, Level, PfnInfo, Vma, level_shift
from .walk import TableSlice

__all__ = ("PteScanner", "pieces")

_LANE_BITS = 64
_TOP = 1 << 52  # above every PFN field: lane comparisons carry into bit 52
_EMPTY = bytes(8)


@functools.lru_cache(maxsize=None)
def _ones(n: int) -> int:
    """1 in each of *n* 64-bit lanes."""
    return ((1 << (_LANE_BITS * n)) - 1) // ((1 << _LANE_BITS) - 1)


@functools.lru_cache(maxsize=None)
def _steps(n: int) -> int:
    """``j`` in lane ``j``, for ``j < n``."""
    return sum(j << (_LANE_BITS * j) for j in range(n))


@functools.lru_cache(maxsize=None)
def _u64s(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}Q")


def _next_empty(data: bytes, at: int, end: int) -> int:
    """Index of the first all-zero entry of *data* from entry *at*, or *end*.

    ``bytes.find`` of eight zero bytes runs in C; a match that straddles two
    entries (the zero high bytes of one, the zero low bytes of the next) is
    not an empty entry, and the search goes on one byte after it.
    """
    limit = end * 8
    pos = at * 8
    while True:
        pos = data.find(_EMPTY, pos, limit)
        if pos < 0:
            return end
        aligned = -(-pos // 8) * 8  # the first entry boundary at or after the match
        if aligned == pos or data[aligned : aligned + 8] == _EMPTY:
            return aligned // 8 if aligned < limit else end
        pos += 1


def pieces(piece: TableSlice) -> Iterator[TableSlice]:
    """The maximal runs of non-empty entries of *piece*, as slices of the same table.

    A run of leaves never spans an empty entry (the next leaf would not
    continue it in virtual address space), so each piece can be judged whole
    by :meth:`PteScanner.uniform_run` on its own. The entries are found with
    searches over the table's bytes, not one by one: a sparse table costs a
    few searches, whatever its size.
    """
    data, end = piece.data, piece.last + 1
    at = piece.first
    while at < end:
        stretch = data[at * 8 : end * 8]
        rest = stretch.lstrip(b"\0")  # C speed: the first non-zero byte
        if not rest:
            return
        start = at + (len(stretch) - len(rest)) // 8
        at = _next_empty(data, start + 1, end)
        yield TableSlice(piece.base, data, start, at - 1, piece.shift, piece.level)


class PteScanner:
    """The whole-table fast path for the table slices of one VMA (see the module doc).

    Lane constants (a value repeated in every lane) are built once per
    distinct value and slice length and kept in :attr:`_lanes`: a process has
    few distinct entry signatures and classification spans.
    """

    def __init__(self, layout: Layout, classifier: Classifier, vma: Vma) -> None:
        #: ``(end address, level, signature, info, every entry linear)`` of the
        #: last slice returned: one that starts at its end and agrees in the
        #: rest continues its run.
        self._last: Optional[Tuple[int, Level, int, PfnInfo, bool]] = None
        arch = for_layout(layout)
        self._decode_leaf: Callable[..., Optional[Leaf]] = arch.decode_leaf
        self._run_bits = arch.run_bits
        #: Level → (signature mask, present bit, PFN mask, pages per entry).
        self._bits: Dict[Level, Tuple[int, int, int, int]] = {}
        self._layout = layout
        self._classifier = classifier
        self._shift = layout.page_shift
        # The linear PFN of the page at va is va >> shift plus this.
        self._linear_delta = vma.pgoff - (vma.start >> layout.page_shift)
        self._lanes: Dict[Tuple[int, int], int] = {}

    def _rep(self, value: int, n: int) -> int:
        """*value* in each of *n* lanes (cached)."""
        key = (value, n)
        rep = self._lanes.get(key)
        if rep is None:
            if len(self._lanes) > 4096:  # a pathological table mix: stay bounded
                self._lanes.clear()
            rep = self._lanes[key] = value * _ones(n)
        return rep

    def _level_bits(self, level: Level) -> Tuple[int, int, int, int]:
        bits = self._bits.get(level)
        if bits is None:
            layout = self._layout
            sig_mask, present, pfn_mask = self._run_bits(layout, level)
            pages = 1 << (level_shift(level, layout.page_shift) - layout.page_shift)
            bits = self._bits[level] = (sig_mask, present, pfn_mask, pages)
        return bits

    def _within(self, pfns: int, n: int, lo: int, hi: int) -> bool:
        """Whether every lane of *pfns* (``PFN << PAGE_SHIFT``) lies in ``[lo, hi)``."""
        shift, rep, top = self._shift, self._rep, self._rep(_TOP, n)
        return (pfns + rep(_TOP - (lo << shift), n)) & top == top and not (pfns + rep(_TOP - (hi << shift), n)) & top

    def _hits_zero_pages(self, pfns: int, n: int) -> bool:
        """Whether a lane of *pfns* is the zero page or in the huge zero page."""
        layout, shift, rep = self._layout, self._shift, self._rep
        top = rep(_TOP, n)
        # A lane equal to the zero page's is zero after the XOR, and only a
        # zero lane plus (_TOP - 1) does not carry into bit 52.
        if (pfns ^ rep(layout.zero_pfn << shift, n)) + rep(_TOP - 1, n) & top != top:
            return True
        hz = layout.huge_zero_pfn
        if hz is None:
            return False
        at_least = (pfns + rep(_TOP - (hz << shift), n)) & top
        past = (pfns + rep(_TOP - ((hz + layout.geometry.pages(Level.PMD)) << shift), n)) & top
        return at_least != past  # some lane in [hz, hz + PMD pages)

    def _one_info(self, fields: bytes, n: int, info: PfnInfo) -> bool:
        """Whether the *n* PFN fields (``PFN << PAGE_SHIFT``, little-endian
        u64s) all classify as *info*, entry by entry."""
        span_info, shift = self._classifier.span_info, self._shift
        known: List[Tuple[int, int]] = []  # spans already found to classify as *info*
        for field in _u64s(n).unpack(fields):
            pfn = field >> shift
            for lo, hi in known:
                if lo <= pfn < hi:
                    break
            else:
                lo, hi, other = span_info(pfn)
                if other is not info and other != info:
                    return False
                known.append((lo, hi))
        return True

    def uniform_run(self, piece: TableSlice) -> Optional[Tuple[Optional[Leaf], PfnInfo, int]]:
        """``(first leaf, page info, count)`` if the slice is one run, else ``None``.

        The first leaf is ``None`` when the slice continues the run of the
        last slice this scanner returned: it starts where that one ended, and
        its entries agree with that one's in everything coalescing compares
        (level, the signature bits, so kind, special, devmap and writable,
        the page info and linearity). Nothing can lie between them (the walk
        is in address order), so :func:`~drgn_p2p.coalesce.coalesce_segments`
        adds its count to the run without decoding a leaf.
        """
        first, n = piece.first, piece.last - piece.first + 1
        data = piece.data
        if first or n * 8 != len(data):
            data = data[first * 8 : (first + n) * 8]
        raw = int.from_bytes(data[:8], "little")
        sig_mask, present, pfn_mask, pages = self._level_bits(piece.level)
        if not raw & present:
            return None
        rep = self._rep
        table = int.from_bytes(data, "little")
        # 1. One decoded kind/special/devmap/writable, every entry present.
        if table & rep(sig_mask, n) != rep(raw & sig_mask, n):
            return None
        # 2. One page info: every PFN field within [lo, hi) of the first PFN's span.
        shift = self._shift
        pfns = table & rep(pfn_mask, n)  # PFN << shift in each lane
        pfn = (raw & pfn_mask) >> shift
        lo, hi, info = self._classifier.span_info(pfn)
        hi = min(hi, _TOP >> shift)
        top = rep(_TOP, n)
        va = piece.base + (first << piece.shift)
        linear = (va >> shift) + self._linear_delta  # linear PFN of the first entry
        if not self._within(pfns, n, lo, hi):
            # Some PFN outside the span: random RAM pages straddle the zero
            # pages, which cut RAM into spans. Take the span around them and
            # show that no PFN is a zero page's; else classify each PFN.
            wide = self._classifier.span_around_zero_pages(pfn)
            if wide is not None and self._within(pfns, n, wide[0], min(wide[1], _TOP >> shift)) \
                    and not self._hits_zero_pages(pfns, n):
                lo, hi = wide[0], min(wide[1], _TOP >> shift)
            elif self._one_info(pfns.to_bytes(n * 8, "little"), n, info):
                lo, hi = 0, _TOP >> shift  # the linear test below knows nothing of the PFNs' range
            else:
                return None
        # 3. The linear test agrees on every entry: entry j's linear PFN is
        # linear + j * pages (a huge leaf maps pages PFNs).
        linear_last = linear + (n - 1) * pages
        all_linear = False
        if linear < hi and linear_last >= lo:
            if linear < 0 or linear_last >= _TOP >> shift:
                return None  # the progression leaves the lanes' range: entry by entry
            # Lane j is zero where entry j maps its linear PFN; a non-zero
            # lane plus (_TOP - 1) carries into bit 52.
            off = pfns ^ ((linear * _ones(n) + pages * _steps(n)) << shift)
            if off and (off + rep(_TOP - 1, n)) & top != top:
                return None  # some entries linear, some not
            all_linear = not off
        # 4. The slice continues the last one this scanner returned: no leaf
        # is decoded (coalescing would join them; see the class doc).
        level, signature, end = piece.level, raw & sig_mask, va + (n << piece.shift)
        last = self._last
        if (last is not None and last[0] == va and last[1] is level and last[2] == signature
                and last[4] == all_linear and (last[3] is info or last[3] == info)):
            self._last = (end, level, signature, info, all_linear)
            return None, info, n
        leaf = self._decode_leaf(raw, va, level, self._layout)
        if leaf.pfn != pfn:
            return None  # PA bits outside the PFN field (arm64 52-bit PA): entry by entry
        self._last = (end, level, signature, info, all_linear)
        return leaf, info, n
