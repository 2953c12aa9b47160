# SPDX-License-Identifier: GPL-2.0-or-later
"""
Classify
--------

Tell what lives at a PFN: RAM, the zero page, a ZONE_DEVICE page of some
``enum memory_type``, or memory without a ``struct page`` (a PCI BAR).

Everything is looked up in sorted range tables built once per target —
``pgmap_array`` (every ``struct dev_pagemap`` and its ranges), the valid
memmap ranges, and the iomem resource tree — so classifying a PFN is a
bisection, not a read of its ``struct page``.
"""

import bisect
import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import drgn
from drgn.helpers.linux.mm import compound_head, for_each_valid_page_range, pfn_to_page
from drgn.helpers.linux.xarray import xa_for_each

from .records import NO_FOLIO_FACTS, FolioFacts, Layout, Level, PageKind, PfnInfo

__all__ = ("Pagemap", "Classifier", "read_pagemaps", "page_zone")

_NONE_INFO = PfnInfo(PageKind.NONE)


@dataclass(frozen=True)
class Pagemap:
    """One ``struct dev_pagemap`` range."""

    address: int  # struct dev_pagemap *
    type_name: str  # "FS_DAX", "GENERIC", "PCI_P2PDMA", "PRIVATE", "COHERENT"
    start_pfn: int
    end_pfn: int  # exclusive
    owner: Optional[str]
    ops: Optional[str]
    memmap_readable: bool
    #: What its pages are (:func:`pagemap_kind`).
    kind: PageKind


_KIND_BY_TYPE = {
    "FS_DAX": PageKind.FSDAX,
    "GENERIC": PageKind.DEVDAX,
    "PCI_P2PDMA": PageKind.P2PDMA,
    "PRIVATE": PageKind.DEVICE_PRIVATE,
    "COHERENT": PageKind.DEVICE_COHERENT,
}


def pagemap_kind(type_name: str, ops: int, owner: int) -> PageKind:
    """The page kind of a ``struct dev_pagemap`` of type *type_name* with the
    ``ops`` and ``owner`` pointers *ops* and *owner*.

    MEMORY_DEVICE_GENERIC is not only device-dax: Xen's unpopulated-alloc
    (gntdev, privcmd) makes GENERIC pgmaps too, with ``owner`` set to its
    resource, and maps their pages with plain PTEs. ``dev_dax_probe()``
    (drivers/dax/device.c, v6.1 to v7.2) sets neither ``ops`` nor ``owner``.
    """
    if type_name == "GENERIC" and (ops or owner):
        return PageKind.DEVICE_GENERIC
    return _KIND_BY_TYPE.get(type_name, PageKind.RAM)


def _generic_owner(prog: drgn.Program, owner: int) -> Optional[str]:
    """Name the ``struct resource *`` Xen's unpopulated-alloc stores as a
    GENERIC pgmap's owner (``"Xen scratch"``); ``None`` when it is not one."""
    try:
        res = drgn.Object(prog, "struct resource *", owner)
        return res.name.string_().decode(errors="replace")
    except (drgn.FaultError, LookupError, ValueError):
        return None


def _p2pdma_provider(prog: drgn.Program, pgmap: drgn.Object) -> Optional[str]:
    """Name the PCI device behind a P2PDMA pgmap.

    ``struct pci_p2pdma_pagemap`` is private to drivers/pci/p2pdma.c: up to
    v6.x it is ``{ provider, bus_offset, pgmap }``; in 7.x it is ``{ pgmap,
    mem }`` with ``mem->owner`` the providing device.
    """
    from drgn import container_of
    from drgn.helpers.linux.device import dev_name

    try:
        p2p = container_of(pgmap, "struct pci_p2pdma_pagemap", "pgmap")
    except LookupError:
        return None
    try:
        try:
            dev = p2p.mem.owner
        except AttributeError:
            dev = p2p.provider.dev.address_of_()
        return dev_name(dev).decode(errors="replace")
    except (drgn.FaultError, LookupError, AttributeError):
        return None


def _memmap_readable(prog: drgn.Program, pfn: int) -> bool:
    try:
        pfn_to_page(prog, pfn).flags.read_()
        return True
    except drgn.FaultError:
        return False


def read_pagemaps(
    prog: drgn.Program, layout: Layout, faults: Optional[List[str]] = None
) -> List[Pagemap]:
    """Every range of every ``struct dev_pagemap`` in ``pgmap_array``, sorted by PFN.

    ``pgmap_array`` (mm/memremap.c) maps each PFN range to its pgmap with
    multi-index entries; one pgmap may appear for several ranges. Parts of
    the xarray or of a pgmap that cannot be read (a filtered vmcore) are
    skipped and described in *faults* when given, else the FaultError is
    raised.
    """
    try:
        xa = prog["pgmap_array"].address_of_()
    except (KeyError, LookupError):
        return []
    names = {value: name for name, value in layout.memory_types.items()}
    seen = set()
    result: List[Pagemap] = []
    try:
        for _, entry in xa_for_each(xa):
            address = entry.value_()
            if address in seen:
                continue
            seen.add(address)
            try:
                result.extend(_pagemap_ranges(prog, layout, names, address))
            except (drgn.FaultError, drgn.BadDataError) as e:
                if faults is None:
                    raise
                faults.append(f"struct dev_pagemap at {address:#x}: {e}")
    except (drgn.FaultError, drgn.BadDataError) as e:
        if faults is None:
            raise
        faults.append(f"pgmap_array: {e}")
    result.sort(key=lambda p: p.start_pfn)
    return result


def _pagemap_ranges(prog: drgn.Program, layout: Layout, names: Dict[int, str], address: int) -> List[Pagemap]:
    pgmap = drgn.Object(prog, "struct dev_pagemap *", address)
    type_name = names.get(pgmap.type.value_(), str(pgmap.type.value_()))
    ops = pgmap.ops.value_()
    owner_ptr = pgmap.owner.value_()
    kind = pagemap_kind(type_name, ops, owner_ptr)
    if type_name == "PCI_P2PDMA":
        owner = _p2pdma_provider(prog, pgmap)
    elif kind == PageKind.DEVICE_GENERIC and owner_ptr:
        owner = _generic_owner(prog, owner_ptr)
    else:
        owner = None
    ops_name = None
    if ops:
        try:
            ops_name = prog.symbol(ops).name
        except LookupError:
            ops_name = hex(ops)
    ranges = []
    for i in range(pgmap.nr_range.value_()):
        rng = pgmap.ranges[i]
        start_pfn = rng.start.value_() >> layout.page_shift
        end_pfn = (rng.end.value_() + 1) >> layout.page_shift
        ranges.append(
            Pagemap(
                address=address,
                type_name=type_name,
                start_pfn=start_pfn,
                end_pfn=end_pfn,
                owner=owner,
                ops=ops_name,
                memmap_readable=_memmap_readable(prog, start_pfn),
                kind=kind,
            )
        )
    return ranges


def _iomem_leaves(prog: drgn.Program) -> List[Tuple[int, int, str]]:
    """``(start, end_exclusive, name)`` of the innermost iomem resources, sorted."""
    result: List[Tuple[int, int, str]] = []

    def visit(res: drgn.Object, depth: int) -> None:
        if depth > 32:  # a loop in a corrupted tree
            return
        child = res.child.read_()
        if not child:
            if depth:
                name = res.name.string_().decode(errors="replace") if res.name else "?"
                result.append((res.start.value_(), res.end.value_() + 1, name))
            return
        # Gaps inside a parent belong to the parent.
        cursor = res.start.value_()
        parent_name = res.name.string_().decode(errors="replace") if depth and res.name else None
        n = 0
        while child and n < 100000:
            start = child.start.value_()
            if parent_name and start > cursor:
                result.append((cursor, start, parent_name))
            visit(child, depth + 1)
            cursor = max(cursor, child.end.value_() + 1)
            child = child.sibling.read_()
            n += 1
        if parent_name and cursor <= res.end.value_():
            result.append((cursor, res.end.value_() + 1, parent_name))

    try:
        visit(prog["iomem_resource"].address_of_(), 0)
    except (KeyError, LookupError, drgn.FaultError):
        pass
    result.sort()
    return result


def _memmap_ranges(prog: drgn.Program) -> List[Tuple[int, int]]:
    """The PFN ranges that have a ``struct page`` (``pfn_valid()``), adjacent ones merged."""
    ranges: List[Tuple[int, int]] = []
    for start, end, _ in for_each_valid_page_range(prog):
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    return ranges


def _between(breaks: List[int], pfn: int) -> Tuple[int, int]:
    """The breakpoints around *pfn*: ``(lo, hi)`` with ``lo <= pfn < hi``."""
    i = bisect.bisect_right(breaks, pfn)
    lo = breaks[i - 1] if i else 0
    hi = breaks[i] if i < len(breaks) else math.inf
    return lo, hi  # type: ignore[return-value]


def page_zone(prog: drgn.Program, layout: Layout, pfn: int) -> Optional[str]:
    """``page_zonenum()`` of *pfn*'s struct page as a name (``"ZONE_DEVICE"``).

    ``None`` when the layout could not learn the zone field or the struct
    page cannot be read (an altmap memmap through /proc/kcore).
    """
    from drgn.helpers.linux.mm import page_flags

    if layout.zone_shift is None:
        return None
    try:
        flags = page_flags(pfn_to_page(prog, pfn)).value_()
    except drgn.FaultError:
        return None
    zone = (flags >> layout.zone_shift) & ((1 << layout.zone_bits) - 1)
    return layout.zone_names.get(zone, str(zone))


class Classifier:
    """Classifies PFNs of one target by bisection over range tables.

    Build it once per audit: it reads ``pgmap_array`` and the valid memmap
    ranges, and the iomem tree the first time a PFN's owner is needed (a
    process of plain RAM never needs it).
    """

    def __init__(self, prog: drgn.Program, layout: Layout) -> None:
        self.layout = layout
        #: What could not be read of the pgmap table: ZONE_DEVICE pages of
        #: the pgmaps it names may be classified as RAM or no-memmap.
        self.faults: List[str] = []
        #: How often the tables were read again, and how often that changed them.
        self.reloads = self.reloads_changed = 0
        self._prog: Optional[drgn.Program] = prog
        self._iomem_table: Optional[List[Tuple[int, int, str]]] = None
        self._set_tables(read_pagemaps(prog, layout, self.faults), _memmap_ranges(prog))

        def reload() -> Tuple[List[Pagemap], List[Tuple[int, int]]]:
            return read_pagemaps(prog, self.layout, []), _memmap_ranges(prog)

        self._reload: Optional[Callable[[], Tuple[List[Pagemap], List[Tuple[int, int]]]]] = reload

    @classmethod
    def from_tables(
        cls,
        layout: Layout,
        pagemaps: List[Pagemap],
        memmap: List[Tuple[int, int]],
        iomem: List[Tuple[int, int, str]],
        reload: Optional[Callable[[], Tuple[List[Pagemap], List[Tuple[int, int]]]]] = None,
    ) -> "Classifier":
        """A classifier over given range tables (sorted), without a kernel: for
        tests. *reload* stands for reading the pgmap and memmap tables again."""
        self = cls.__new__(cls)
        self.layout = layout
        self.faults = []
        self.reloads = self.reloads_changed = 0
        self._prog = None
        self._iomem_table = iomem
        self._set_tables(pagemaps, memmap)
        self._reload = reload
        return self

    def _set_tables(self, pagemaps: List[Pagemap], memmap: List[Tuple[int, int]]) -> None:
        self.pagemaps = pagemaps
        self._pgmap_starts = [p.start_pfn for p in pagemaps]
        self._memmap = memmap
        self._memmap_starts = [r[0] for r in memmap]
        self._cache: Dict[object, PfnInfo] = {}
        self._breaks = self._breakpoints()
        self._outer_breaks = self._breakpoints(zero_pages=False)
        #: Sorted, disjoint ``(lo, hi)`` PFN spans known to hold neither a
        #: pgmap nor a memmap at a re-read of the tables (see :meth:`_current`).
        self._confirmed: List[Tuple[int, int]] = []
        #: The last answer of :meth:`span_info` (tables change: forgotten).
        self._last_span: Optional[Tuple[int, int, PfnInfo]] = None

    def _unknown(self, pfn: int) -> bool:
        """Whether the snapshot places *pfn* in no pgmap, no memmap and neither zero page."""
        layout = self.layout
        hz = layout.huge_zero_pfn
        return (
            pfn != layout.zero_pfn
            and not (hz is not None and hz <= pfn < hz + layout.geometry.pages(Level.PMD))
            and self.pagemap(pfn) is None
            and not self.has_memmap(pfn)
        )

    def _current(self, pfn: int) -> bool:
        """Make sure the tables are current for *pfn*, which the snapshot places
        in no pgmap and no memmap, before it is judged; True when a re-read
        found it (the tables changed), so that the caller asks again.

        The pgmap and memmap tables are a snapshot taken when the classifier
        was built, but drivers add device memory while an audit runs (test_hmm
        grows its device-private memory chunk by chunk; a GPU driver on
        demand). A PFN the snapshot knows nothing of may be such memory, and
        judging it as memory without a struct page would be a false finding:
        so the tables are read again, once per span of unknown PFNs (a BAR
        costs one re-read, not one per page). Only the unknown-PFN paths of
        :meth:`span` and :meth:`classify` call it: RAM and device PFNs pay nothing.
        """
        if self._reload is None:
            return False
        i = bisect.bisect_right(self._confirmed, (pfn, math.inf)) - 1
        if i >= 0 and pfn < self._confirmed[i][1]:
            return False
        if self.refresh() and not self._unknown(pfn):
            return True
        bisect.insort(self._confirmed, _between(self._breaks, pfn))
        return False

    def refresh(self, layout: Optional[Layout] = None) -> bool:
        """Read the pgmap and memmap tables again; True when they or the layout changed.

        :meth:`_current` does so for an unknown PFN; the audit of a running
        target does so before it reads a VMA a second time to confirm its
        findings (a pgmap that went away with the mapping that used it must
        not be judged against the old snapshot, nor a new one missed), and
        hands over *layout* read again with it: the huge zero folio is
        allocated on first use, so a PMD that maps it while an audit runs
        points at a PFN the audit's layout did not know as the huge zero page.
        """
        relaid = layout is not None and layout is not self.layout
        if relaid:
            self.layout = layout
        pagemaps, memmap = self.pagemaps, self._memmap
        if self._reload is not None:
            self.reloads += 1
            try:
                pagemaps, memmap = self._reload()
            except (drgn.FaultError, drgn.BadDataError):
                pass
        tables_changed = (pagemaps, memmap) != (self.pagemaps, self._memmap)
        if not (tables_changed or relaid):
            return False
        self.reloads_changed += tables_changed
        self._set_tables(pagemaps, memmap)
        return True

    @property
    def _iomem(self) -> List[Tuple[int, int, str]]:
        """The innermost iomem resources (read on first use), and their breakpoints."""
        if self._iomem_table is None:
            self._iomem_table = _iomem_leaves(self._prog) if self._prog is not None else []
        if not hasattr(self, "_iomem_starts"):
            page = 1 << self.layout.page_shift
            self._iomem_starts = [r[0] for r in self._iomem_table]
            # iomem_owner() tests the page's first byte: pfn << page_shift.
            self._iomem_breaks = sorted({-(-x // page) for start, end, _ in self._iomem_table for x in (start, end)})
        return self._iomem_table

    def _breakpoints(self, zero_pages: bool = True) -> List[int]:
        """Every PFN at which one of :meth:`classify`'s tests other than the
        iomem owner (and, without *zero_pages*, the zero pages' tests) can
        change its answer."""
        layout = self.layout
        points = set()
        if zero_pages:
            points.update((layout.zero_pfn, layout.zero_pfn + 1))
            if layout.huge_zero_pfn is not None:
                points.update((layout.huge_zero_pfn, layout.huge_zero_pfn + layout.geometry.pages(Level.PMD)))
        for p in self.pagemaps:
            points.update((p.start_pfn, p.end_pfn))
        for start, end in self._memmap:
            points.update((start, end))
        return sorted(points)

    def span(self, pfn: int) -> Tuple[int, int]:
        """``(lo, hi)`` around *pfn* over which :meth:`classify` returns one and the same object.

        No test in :meth:`classify` changes its answer between two
        consecutive breakpoints, and its answers are cached by what they
        depend on, so every PFN of ``[lo, hi)`` gets the :class:`PfnInfo`
        that *pfn* gets. The iomem owner matters only to PFNs without a
        struct page outside every pgmap (a pgmap's answer is cached per
        pgmap), so only there are the iomem breakpoints used. ``hi`` may be
        :data:`math.inf`.
        """
        if self._unknown(pfn):
            self._current(pfn)
        if self._unknown(pfn) or (self._lost_pgmaps() and self.pagemap(pfn) is None):
            return self._ram_span(pfn)
        return _between(self._breaks, pfn)

    def span_around_zero_pages(self, pfn: int) -> Optional[Tuple[int, int]]:
        """``(lo, hi)`` around *pfn* over which every PFN but the zero page
        and the huge zero page's PFNs gets *pfn*'s :class:`PfnInfo`: the zero
        pages sit inside RAM and cut it into spans that random RAM pages
        straddle. ``None`` when *pfn* is a zero page, or its answer depends on
        more than the pgmap and memmap tables (see :meth:`span`)."""
        layout = self.layout
        hz = layout.huge_zero_pfn
        if pfn == layout.zero_pfn or (hz is not None and hz <= pfn < hz + layout.geometry.pages(Level.PMD)):
            return None
        if self._unknown(pfn) or self._lost_pgmaps():
            return None
        return _between(self._outer_breaks, pfn)

    def span_info(self, pfn: int) -> Tuple[int, int, PfnInfo]:
        """``(lo, hi, info)``: :meth:`span` of *pfn* and the :class:`PfnInfo`
        :meth:`classify` gives every PFN in it.

        The last answer is kept: the PTE tables of a mapping mostly fall in
        the span of the table before them, which then costs one comparison.
        """
        last = self._last_span
        if last is not None and last[0] <= pfn < last[1]:
            return last
        lo, hi = self.span(pfn)
        tables = self._breaks
        info = self.classify(pfn)
        answer = (lo, hi, info)
        if self._breaks is tables:  # classify() did not read the tables anew
            self._last_span = answer
        return answer

    def _lost_pgmaps(self) -> bool:
        """Whether part of the pgmap table could not be read (and a kernel is there to ask)."""
        return bool(self.faults) and self._prog is not None

    def _ram_span(self, pfn: int) -> Tuple[int, int]:
        """The span of a PFN whose answer depends on its iomem resource: one
        without a memmap (its owner), or one with a memmap outside every known
        pgmap when pgmaps were lost (a device's range, a pmem namespace, is
        then never one span with System RAM)."""
        lo, hi = _between(self._breaks, pfn)
        self._iomem  # noqa: B018  (loads the iomem breakpoints)
        io_lo, io_hi = _between(self._iomem_breaks, pfn)
        return max(lo, io_lo), min(hi, io_hi)

    def pagemap(self, pfn: int) -> Optional[Pagemap]:
        """The pgmap range holding *pfn*, if any."""
        i = bisect.bisect_right(self._pgmap_starts, pfn) - 1
        if i >= 0 and pfn < self.pagemaps[i].end_pfn:
            return self.pagemaps[i]
        return None

    def has_memmap(self, pfn: int) -> bool:
        """Whether *pfn* has a ``struct page`` (``pfn_valid()``)."""
        i = bisect.bisect_right(self._memmap_starts, pfn) - 1
        return i >= 0 and pfn < self._memmap[i][1]

    def folio_facts(self, pfn: int) -> FolioFacts:
        """What GUP tests of the folio holding *pfn* before it takes it
        (:class:`FolioFacts`; nothing when there is no kernel, or its struct
        page cannot be read): ``folio_ref_count()`` (GUP-fast's
        ``folio_ref_try_add()`` fails on 0, the slow path's
        ``try_grab_folio()`` WARNs and returns -ENOMEM; mm/gup.c, 6.1 to 7.2)
        and ``folio->mapping`` (``gup_fast_folio_allowed()``,
        ``get_futex_key()``).
        """
        prog = self._prog
        if prog is None:
            return NO_FOLIO_FACTS
        try:
            # drgn's compound_head() knows 7.1's compound_info (a mask with HVO).
            head = compound_head(pfn_to_page(prog, pfn))
            return FolioFacts(unreferenced=head._refcount.counter.value_() == 0,
                              unmapped=not head.mapping.value_())
        except (drgn.FaultError, drgn.BadDataError, LookupError, AttributeError, ValueError):
            return NO_FOLIO_FACTS

    def iomem_owner(self, pfn: int) -> Optional[str]:
        """Name of the innermost iomem resource holding *pfn*."""
        addr = pfn << self.layout.page_shift
        iomem = self._iomem
        i = bisect.bisect_right(self._iomem_starts, addr) - 1
        if i >= 0 and addr < iomem[i][1]:
            return iomem[i][2]
        return None

    def classify(self, pfn: Optional[int]) -> PfnInfo:
        """The :class:`PfnInfo` of *pfn* (``PageKind.NONE`` for ``None``)."""
        if pfn is None:
            return _NONE_INFO
        layout = self.layout
        if pfn == layout.zero_pfn:
            return self._cached(("zero",), lambda: PfnInfo(PageKind.ZERO_PAGE))
        hz = layout.huge_zero_pfn
        if hz is not None and hz <= pfn < hz + layout.geometry.pages(Level.PMD):
            return self._cached(("huge-zero",), lambda: PfnInfo(PageKind.HUGE_ZERO))
        pgmap = self.pagemap(pfn)
        if pgmap is not None:
            return self._cached(
                ("pgmap", pgmap.address, pgmap.start_pfn),
                lambda: PfnInfo(
                    pgmap.kind,
                    pgmap=pgmap.address,
                    owner=pgmap.owner or self.iomem_owner(pfn),
                    memmap_readable=pgmap.memmap_readable,
                ),
            )
        if self.has_memmap(pfn):
            if self._lost_pgmaps():
                # Part of the pgmap table could not be read (a filtered
                # vmcore): this may be device memory whose pgmap was lost, and
                # whose struct pages live on the device, outside the dump. Say
                # whether the struct pages of its iomem resource can be read.
                lo = self._ram_span(pfn)[0]
                prog = self._prog
                return self._cached(("ram", lo), lambda: PfnInfo(PageKind.RAM, memmap_readable=_memmap_readable(prog, lo)))
            return self._cached(("ram",), lambda: PfnInfo(PageKind.RAM))
        if self._current(pfn):
            return self.classify(pfn)
        owner = self.iomem_owner(pfn)
        return self._cached(("nomem", owner), lambda: PfnInfo(PageKind.NO_MEMMAP, owner=owner))

    def _cached(self, key: object, make) -> PfnInfo:
        info = self._cache.get(key)
        if info is None:
            info = self._cache[key] = make()
        return info

    def __iter__(self) -> Iterator[Pagemap]:
        return iter(self.pagemaps)
