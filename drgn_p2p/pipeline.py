# SPDX-License-Identifier: GPL-2.0-or-later
"""
Pipeline
--------

The pipeline, top to bottom::

    processes → VMAs → page-table walk → decode → classify → coalesce → rules

:func:`audit` returns plain records (:class:`AuditResult`); it prints nothing.
The CLI and the library API (``drgn_p2p.audit(prog)``) share it.
"""

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import drgn

from .arch import for_layout
from .classify import Classifier
from .coalesce import coalesce_segments, merge_findings
from .errors import UsageError
from .gup import GupPrediction, GupSegment, segments as gup_segments, vma_shape
from .layout import read_layout
from .records import NO_FOLIO_FACTS, Finding, FolioFacts, Layout, Leaf, PageKind, PfnInfo, Run, Severity, Vma
from .rules import RULES, Rule, VmaTally, evaluate_run, evaluate_vma
from .scan import PteScanner, pieces
from .tasks import for_each_process
from .walk import PageTableWalker, Process, TableSlice, share_names, unshare_names, TableFault, process_vmas

__all__ = ("AuditStats", "VmaReport", "AuditResult", "audit", "check_selection", "select_rules", "list_pgmaps",
           "predict_gup", "confirm_findings")

#: What reading a process's mm, VMAs or files raises when the target is
#: corrupt, truncated, or (live) changed under the walk: the process exited
#: and its memory was freed or reused.
TARGET_CHANGED = (drgn.FaultError, drgn.BadDataError, drgn.ObjectAbsentError, ValueError, LookupError, OverflowError)


@dataclass
class AuditStats:
    """Counters of one audit run."""

    processes: int = 0
    vmas: int = 0
    tables_read: int = 0
    table_faults: int = 0
    #: Processes whose mm or VMAs could not be read (exited mid-walk, or a damaged target).
    process_faults: int = 0
    #: Parts of the pgmap table (pgmap_array, a struct dev_pagemap) that
    #: could not be read: device pages there may be classified as RAM.
    pgmap_faults: int = 0
    #: Findings on a running target that a second read of their VMA no
    #: longer showed: the mapping (or the device memory under it) changed
    #: while it was read, so they are not reported (:func:`confirm_findings`).
    withdrawn: int = 0
    leaves: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class VmaReport:
    """What one VMA maps: leaf counts by entry kind and by page kind, in pages of 4 KiB."""

    vma: Vma
    pages_by_kind: Tuple[Tuple[str, int], ...]  # PageKind value → 4 KiB pages (present leaves)
    entries_by_kind: Tuple[Tuple[str, int], ...]  # EntryKind value → leaves
    leaves_by_level: Tuple[Tuple[str, int], ...]  # "pte"/"pmd"/"pud" → present leaves
    special: int  # present leaves with the special bit
    devmap: int  # present leaves with the devmap bit
    unreadable_tables: int
    #: ``struct dev_pagemap *`` → 4 KiB pages of it that this VMA maps or
    #: holds entries for (device-private entries included).
    pages_by_pgmap: Tuple[Tuple[int, int], ...] = ()
    #: The coalesced runs, kept only when asked for (``keep_runs``).
    runs: Tuple[Run, ...] = ()
    #: GUP predictions over the walked part of the VMA (:mod:`drgn_p2p.gup`).
    gup: Tuple[GupSegment, ...] = ()

    @property
    def kinds(self) -> Tuple[str, ...]:
        return tuple(k for k, _ in self.pages_by_kind)


@dataclass
class AuditResult:
    """Everything one audit found, as records."""

    layout: Layout
    findings: List[Finding] = field(default_factory=list)
    vmas: List[VmaReport] = field(default_factory=list)
    faults: List[Tuple[Vma, TableFault]] = field(default_factory=list)
    not_applicable: Dict[str, str] = field(default_factory=dict)
    stats: AuditStats = field(default_factory=AuditStats)
    #: Ids of the rules that were run, in catalogue order: a rule here without
    #: a finding passed.
    rules: List[str] = field(default_factory=list)
    #: ``id(finding)`` → the baseline's reason, for the findings a baseline
    #: suppresses (:mod:`drgn_p2p.baseline`): reported, but not counted.
    suppressed: Dict[int, str] = field(default_factory=dict)

    def suppression(self, finding: Finding) -> Optional[str]:
        """The reason *finding* is suppressed, or None when it counts."""
        return self.suppressed.get(id(finding))

    def worst(self) -> Optional[Severity]:
        """The most severe finding that is not suppressed."""
        return max((f.severity for f in self.findings if id(f) not in self.suppressed), default=None)


def check_selection(rules: Sequence[str] = (), kinds: Sequence[str] = ()) -> None:
    """Check rule ids and page-kind names before any target is opened.

    :raises UsageError: naming the first rule or kind that does not exist.
    """
    known = {r.id for r in RULES}
    unknown = [i for i in rules if i not in known]
    if unknown:
        raise UsageError(f"unknown rule {unknown[0]!r} (see 'drgn-p2p rules')")
    for kind in kinds:
        try:
            PageKind(kind)
        except ValueError:
            names = ", ".join(k.value for k in PageKind)
            raise UsageError(f"unknown page kind {kind!r} (one of: {names})") from None


def select_rules(layout: Layout, ids: Sequence[str] = ()) -> Tuple[List[Rule], Dict[str, str]]:
    """The rules to run on *layout*, and the reason each other rule is not applicable.

    :raises UsageError: if *ids* names a rule that does not exist.
    """
    check_selection(rules=ids)
    active: List[Rule] = []
    skipped: Dict[str, str] = {}
    for rule in RULES:
        if ids and rule.id not in ids:
            continue
        reason = rule.applies(layout)
        if reason is None:
            active.append(rule)
        else:
            skipped[rule.id] = reason
    return active, skipped


def _segments(
    walker: PageTableWalker,
    vma: Vma,
    layout: Layout,
    classifier: Classifier,
    start: int,
    end: int,
    faults: List[TableFault],
) -> Iterator[Tuple[Leaf, PfnInfo, int]]:
    """``(leaf, page info, count)`` segments of *vma*'s leaves, for :func:`coalesce_segments`.

    A PTE table whose entries are alike is one segment (:mod:`drgn_p2p.scan`),
    and so is each stretch of alike entries between empty ones; everything
    else is decoded and classified one leaf at a time.
    """
    decode_leaf = for_layout(layout).decode_leaf
    classify = classifier.classify
    uniform_run = PteScanner(layout, classifier, vma).uniform_run
    for item in walker.walk_tables(max(start, vma.start), min(end, vma.end)):
        if isinstance(item, TableSlice):
            segment = uniform_run(item)
            if segment is not None:
                yield segment
                continue
            # Not one run: judge each stretch between empty entries whole where
            # it is one run, and leaf by leaf where it is not.
            for piece in pieces(item):
                if piece.first < piece.last and (piece.first, piece.last) != (item.first, item.last):
                    segment = uniform_run(piece)
                    if segment is not None:
                        yield segment
                        continue
                for va, level, raw in piece.leaves():
                    leaf = decode_leaf(raw, va, level, layout)
                    if leaf is not None:
                        yield leaf, classify(leaf.pfn), 1
            continue
        elif isinstance(item, TableFault):
            faults.append(item)
            continue
        else:
            leaves = (item,)
        for va, level, raw in leaves:
            leaf = decode_leaf(raw, va, level, layout)
            if leaf is not None:
                yield leaf, classify(leaf.pfn), 1


def reads_folio(vma: Vma, layout: Layout, leaf: Leaf, kind: PageKind) -> bool:
    """Whether the audit reads the folio behind *leaf* (:class:`FolioFacts`:
    what GUP tests before it takes the page): device pages, and memory a
    driver mapped itself — a devmap leaf, a VM_MIXEDMAP VMA — whose refcount
    and ``folio->mapping`` nothing in the VMA tells. Page-cache and anonymous
    memory is left alone: the VMA says what its folios are, and reading one
    ``struct page`` per run of them would cost what the walk costs.
    """
    if not leaf.kind.maps_memory or leaf.pfn is None or not kind.has_memmap:
        return False
    return kind.is_zone_device or leaf.devmap or vma.has(layout, "MIXEDMAP")


def audit_vma(
    walker: PageTableWalker,
    vma: Vma,
    layout: Layout,
    classifier: Classifier,
    rules: Sequence[Rule],
    start: int = 0,
    end: int = 1 << 64,
    keep_runs: bool = False,
) -> Tuple[VmaReport, List[Finding], List[TableFault]]:
    """Walk, classify and judge one VMA."""
    faults: List[TableFault] = []
    # Tallies in plain dicts and locals: this loop runs once per run of every VMA.
    pages: Dict[str, int] = {}
    entries: Dict[str, int] = {}
    levels: Dict[str, int] = {}
    by_pgmap: Dict[int, int] = {}
    special = devmap = 0
    findings: List[Finding] = []
    tally = VmaTally(vma, layout)
    kept: List[Run] = []
    spans: List[Tuple[int, int, Leaf, PageKind, FolioFacts]] = []
    fsdax = False
    for run in coalesce_segments(vma, _segments(walker, vma, layout, classifier, start, end, faults)):
        leaf, page, count = run.first, run.page, run.count
        kind = page.kind
        tally.add(run)
        facts = classifier.folio_facts(leaf.pfn) if reads_folio(vma, layout, leaf, kind) else NO_FOLIO_FACTS
        spans.append((leaf.va, run.end, leaf, kind, facts))
        entry_kind = leaf.kind.value
        entries[entry_kind] = entries.get(entry_kind, 0) + count
        if page.pgmap:
            by_pgmap[page.pgmap] = by_pgmap.get(page.pgmap, 0) + count * (leaf.size >> leaf.page_shift)
        if leaf.kind.maps_memory:
            pages[kind.value] = pages.get(kind.value, 0) + count * (leaf.size >> leaf.page_shift)
            label = leaf.level.label
            levels[label] = levels.get(label, 0) + count
            if leaf.special:
                special += count
            if leaf.devmap:
                devmap += count
        fsdax = fsdax or kind is PageKind.FSDAX
        found = evaluate_run(run, layout, rules)
        if found:
            findings.extend(found)
        if keep_runs:
            kept.append(run)
    findings.extend(evaluate_vma(tally.summary(), layout, rules))
    gup = gup_segments(layout, vma_shape(vma, fsdax), max(start, vma.start), min(end, vma.end), spans)
    report = VmaReport(
        vma=vma,
        pages_by_kind=tuple(sorted(pages.items())),
        entries_by_kind=tuple(sorted(entries.items())),
        leaves_by_level=tuple(sorted(levels.items())),
        special=special,
        devmap=devmap,
        unreadable_tables=len(faults),
        pages_by_pgmap=tuple(sorted(by_pgmap.items())),
        runs=tuple(kept),
        gup=gup,
    )
    return report, list(merge_findings(findings)), faults


def confirm_findings(first: Sequence[Finding], again: Sequence[Finding]) -> List[Finding]:
    """The findings of a second read of a VMA (*again*) that the first read
    (*first*) made too: the same rule over an overlapping range.

    A live kernel changes its page tables and its device memory while they
    are read: an entry read just before test_hmm migrated its page back and
    released the chunk is judged against a pgmap table read after, and looks
    like a device-private entry pointing nowhere. A violation is a state,
    and a state is still there when read again; what only one read saw is a
    race, not a finding. What the second read says is reported, as it is the
    newer truth.
    """
    return [g for g in again if any(f.rule == g.rule and f.start < g.end and g.start < f.end for f in first)]


def _reads_running_kernel(prog: drgn.Program) -> bool:
    """Whether *prog*'s memory may change while it is read (``/proc/kcore``,
    a QEMU guest over QMP), as opposed to a core dump."""
    return bool(prog.flags & drgn.ProgramFlags.IS_LIVE)


def audit(
    prog: drgn.Program,
    *,
    pids: Sequence[int] = (),
    comms: Sequence[str] = (),
    kinds: Sequence[str] = (),
    rules: Sequence[str] = (),
    va_range: Optional[Tuple[int, int]] = None,
    progress: Optional[Callable[[int, int, Process], None]] = None,
    keep_runs: bool = False,
) -> AuditResult:
    """Audit the page tables of every user process of *prog* (or those selected).

    :param pids: thread-group ids to audit (empty: all).
    :param comms: task names to audit (empty: all).
    :param kinds: keep only VMAs mapping these page kinds (``"fsdax"``, …) and
        findings on them.
    :param rules: rule ids to run (empty: every applicable rule).
    :param va_range: ``(start, end)`` virtual address range to walk.
    :param progress: called as ``progress(index, total, process)`` before
        each process is walked.
    :param keep_runs: keep every VMA's coalesced runs in its report (memory
        grows with the number of runs).

    On a running kernel a VMA with findings is read a second time, and only
    the findings that read confirms are reported (:func:`confirm_findings`).
    """
    started = time.monotonic()
    running = _reads_running_kernel(prog)
    check_selection(rules=rules, kinds=kinds)
    layout = read_layout(prog)
    active, skipped = select_rules(layout, rules)
    run_rules = tuple(active)  # one object for every run: evaluate_run() splits it once
    classifier = Classifier(prog, layout)
    result = AuditResult(layout=layout, not_applicable=skipped, rules=[r.id for r in active])
    start, end = va_range if va_range else (0, 1 << 64)
    share_names(prog)  # one cache of file paths and vm_ops names for this audit
    for message in classifier.faults:
        result.stats.pgmap_faults += 1
        result.faults.append(
            (None, TableFault(None, 0, 0, f"{message} (device pages of unread pgmaps may be classified as RAM)",
                              scope="pgmaps"))
        )

    def process_fault(message: str, pid: Optional[int]) -> None:
        result.stats.process_faults += 1
        scope = "tasks" if pid is None else "process"
        result.faults.append((None, TableFault(None, 0, 0, message, scope=scope, pid=pid)))

    # The address spaces are listed first (a few records each) so that a
    # progress bar knows the total.
    processes = list(for_each_process(prog, pids, comms, on_fault=process_fault))
    for index, process in enumerate(processes):
        if progress is not None:
            progress(index, len(processes), process)
        result.stats.processes += 1
        try:
            walker = PageTableWalker.for_mm(prog, layout, process.mm)
            vmas = list(process_vmas(prog, process, start, end, layout=layout))
        except TARGET_CHANGED as e:
            # The process exited (its mm freed or reused) under a live walk,
            # or the target is damaged: say so, and go on with the others.
            process_fault(f"pid {process.pid} ({process.comm}): cannot read its mm or VMAs: {type(e).__name__}: {e}",
                          process.pid)
            continue
        for vma in vmas:
            report, findings, faults = audit_vma(walker, vma, layout, classifier, run_rules, start, end, keep_runs)
            if findings and running:
                again = _read_again(prog, process, vma, classifier, run_rules, start, end, keep_runs)
                layout = classifier.layout  # the running facts were read again with the tables
                confirmed: List[Finding] = []
                if again is not None:
                    # what the VMA maps, as the read that confirmed its findings saw it
                    report, again_findings = again
                    confirmed = confirm_findings(findings, again_findings)
                result.stats.withdrawn += sum(
                    1 for f in findings if not confirm_findings(confirmed, [f])
                )
                findings = confirmed
            result.stats.vmas += 1
            if kinds and not set(kinds) & set(report.kinds):
                continue
            result.vmas.append(report)
            result.findings.extend(findings)
            result.faults.extend((vma, f) for f in faults)
        result.stats.tables_read += walker.tables_read
        result.stats.table_faults += walker.faults
    unshare_names(prog)
    result.stats.seconds = time.monotonic() - started
    return result


def _read_again(
    prog: drgn.Program,
    process: Process,
    vma: Vma,
    classifier: Classifier,
    rules: Sequence[Rule],
    start: int,
    end: int,
    keep_runs: bool,
) -> Optional[Tuple[VmaReport, List[Finding]]]:
    """*vma* read a second time, with fresh pgmap tables, the layout's running
    facts read again (:meth:`Classifier.refresh`) and no cached page table:
    its report and findings, or ``None`` when the process went away."""
    try:
        classifier.refresh(read_layout(prog))
        layout = classifier.layout
        walker = PageTableWalker.for_mm(prog, layout, process.mm)
        report, findings, _ = audit_vma(walker, vma, layout, classifier, rules, start, end, keep_runs)
    except TARGET_CHANGED:
        return None
    return report, findings


def list_pgmaps(prog: drgn.Program, result: Optional[AuditResult] = None) -> List[Dict[str, object]]:
    """Every ``struct dev_pagemap`` of *prog* with who maps its pages.

    One dict per pgmap: ``pgmap`` (its address), ``type`` (``enum
    memory_type`` name), ``start``/``end`` (physical, hex), ``pages``,
    ``owner`` (the pgmap's owner, else the iomem resource over it), ``ops``
    (the ``dev_pagemap_ops`` symbol), ``memmap_readable`` and ``mapped_by``
    (``"PID/COMM"`` → 4 KiB pages mapped). *result* is an audit of every
    process of *prog* (run when not given).
    """
    if result is None:
        result = audit(prog)
    classifier = Classifier(prog, result.layout)
    shift = result.layout.page_shift
    mapped: Dict[int, Dict[str, int]] = {}
    for r in result.vmas:
        for pgmap, pages in r.pages_by_pgmap:
            key = f"{r.vma.pid}/{r.vma.comm}"
            per = mapped.setdefault(pgmap, {})
            per[key] = per.get(key, 0) + pages
    return [
        {
            "pgmap": hex(p.address),
            "type": p.type_name,
            "start": hex(p.start_pfn << shift),
            "end": hex(p.end_pfn << shift),
            "pages": p.end_pfn - p.start_pfn,
            "owner": p.owner or classifier.iomem_owner(p.start_pfn),
            "ops": p.ops,
            "memmap_readable": p.memmap_readable,
            "mapped_by": mapped.get(p.address, {}),
        }
        for p in classifier.pagemaps
    ]


def predict_gup(prog: drgn.Program, pid: int, address: int) -> Tuple[GupPrediction, ...]:
    """What every GUP flavour and user of :data:`drgn_p2p.gup.USERS` will do
    with the page at *address* of process *pid* (in that order).

    :raises UsageError: if there is no such process or *address* is in no VMA.
    """
    page = address & ~0xFFF
    result = audit(prog, pids=[pid], va_range=(page, page + 0x1000))
    if not result.stats.processes:
        raise UsageError(f"no process with pid {pid}")
    for report in result.vmas:
        for segment in report.gup:
            if segment.start <= address < segment.end:
                return segment.predictions
    raise UsageError(f"address {address:#x} is not in any VMA of pid {pid}")
