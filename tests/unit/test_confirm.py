# SPDX-License-Identifier: GPL-2.0-or-later
"""A running kernel changes under the audit: a finding is reported only when
a second read of its VMA, with the pgmap tables read again, shows it too.

The race this stands for was seen on 7.2 with test_hmm: an entry read just
before its device-private chunk was evicted and released was judged against
the pgmap table read after. Here the kernel is faked (the stages that read it
are replaced), and what changes between the two reads is either the
classification of the PFN (the pgmap went away) or the entry itself.
"""

import dataclasses
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import drgn
import pytest

from drgn_p2p import pipeline
from drgn_p2p.arch import x86_64
from drgn_p2p.classify import Classifier
from drgn_p2p.pipeline import confirm_findings
from drgn_p2p.records import Finding, Layout, Level, PageKind, PfnInfo, Severity
from drgn_p2p.walk import PageTableWalker, Process

from .fakephys import HUGE_BITS, pte
from .layouts import L72
from .test_pipeline_faults import FakeMm, FakeProgram, StubClassifier, vma
from .test_walk import VA, Tables

DEVICE_PFN, RAM_PFN = 0x5000, 0x1000
RUNNING = FakeProgram(drgn.ProgramFlags.IS_LIVE)
DUMP = FakeProgram()


class ChangingClassifier(StubClassifier):
    """PFN kinds that a re-read of the pgmap tables (:meth:`refresh`) replaces."""

    def __init__(self, before: Dict[int, PageKind], after: Dict[int, PageKind]) -> None:
        super().__init__(None, L72)
        self.tables = [before, after]
        self.refreshes = 0

    def refresh(self, layout: Optional[Layout] = None) -> bool:
        self.refreshes += 1
        changed = len(self.tables) > 1
        if changed:
            self.tables.pop(0)
        return changed

    def classify(self, pfn):
        return PfnInfo(self.tables[0].get(pfn, PageKind.RAM))


def fake(monkeypatch: pytest.MonkeyPatch, classifier, *pfns: int, level: Level = Level.PTE,
         entry: Callable[[int], int] = pte, layouts: Sequence[Layout] = (L72,)) -> List[PageTableWalker]:
    """One process with one VMA whose first entry at *level*, ``entry(pfn)``,
    maps *pfns*[0] at the first read of its tables and *pfns*[i] at the i-th;
    :func:`read_layout` returns *layouts*[i] at its i-th call (the last one
    after). Returns the walkers made."""
    memories = []
    for pfn in pfns:
        tables = Tables()
        tables.map(VA, entry(pfn), level)
        memories.append((tables.memory(), tables.root))
    reads: List[Layout] = []

    def read_layout(prog) -> Layout:
        reads.append(layouts[min(len(reads), len(layouts) - 1)])
        return reads[-1]

    walkers: List[PageTableWalker] = []

    def for_mm(cls, prog, layout, mm) -> PageTableWalker:
        memory, root = memories[min(len(walkers), len(memories) - 1)]
        walkers.append(PageTableWalker(memory.read, layout, root))
        return walkers[-1]

    def for_each_process(prog, pids=(), comms=(), on_fault=None) -> Iterator[Process]:
        yield Process(100, "holder", FakeMm(100), 1)

    def process_vmas(prog, process, start=0, end=1 << 64, layout=None) -> Iterator:
        yield vma(process.pid, process.comm)

    monkeypatch.setattr(pipeline, "read_layout", read_layout)
    monkeypatch.setattr(pipeline, "Classifier", lambda prog, layout: classifier)
    monkeypatch.setattr(pipeline, "for_each_process", for_each_process)
    monkeypatch.setattr(pipeline, "process_vmas", process_vmas)
    monkeypatch.setattr(PageTableWalker, "for_mm", classmethod(for_mm))
    return walkers


def rule_ids(result) -> List[str]:
    return [f.rule for f in result.findings]


def test_a_finding_whose_pgmap_changed_is_withdrawn_on_a_running_kernel(monkeypatch) -> None:
    classifier = ChangingClassifier({DEVICE_PFN: PageKind.DEVICE_PRIVATE}, {})
    walkers = fake(monkeypatch, classifier, DEVICE_PFN)
    result = pipeline.audit(RUNNING)
    assert rule_ids(result) == []
    assert result.stats.withdrawn == 1
    assert classifier.refreshes == 1 and len(walkers) == 2  # read again, with no cached table


def test_a_finding_whose_entry_changed_is_withdrawn_on_a_running_kernel(monkeypatch) -> None:
    kinds = {DEVICE_PFN: PageKind.DEVICE_PRIVATE}
    classifier = ChangingClassifier(kinds, kinds)
    fake(monkeypatch, classifier, DEVICE_PFN, RAM_PFN)
    result = pipeline.audit(RUNNING)
    assert rule_ids(result) == [] and result.stats.withdrawn == 1


def test_a_finding_seen_twice_is_reported_once(monkeypatch) -> None:
    kinds = {DEVICE_PFN: PageKind.DEVICE_PRIVATE}
    classifier = ChangingClassifier(kinds, kinds)
    walkers = fake(monkeypatch, classifier, DEVICE_PFN)
    result = pipeline.audit(RUNNING)
    assert rule_ids(result) == ["device-private-present"]
    assert result.findings[0].severity == Severity.ERROR
    assert result.stats.withdrawn == 0 and len(walkers) == 2


def test_a_pmd_of_the_huge_zero_folio_allocated_while_the_audit_ran_is_withdrawn(monkeypatch) -> None:
    """Seen on 7.2 with the mm selftest hmm-tests: the huge zero folio is
    allocated on first use, and since v6.18 (its PMD mappings made special)
    a special PMD on RAM outside VM_PFNMAP/VM_MIXEDMAP is legitimate only when
    it maps that folio. A PMD mapped between the audit's reading of
    ``huge_zero_pfn`` (still ~0: no folio) and its walk of the process points
    at a PFN the audit did not know as the huge zero page: the second read
    takes the layout read again, and the finding goes."""
    huge_zero = 0x2000
    memmap = [(0x1000, 0x50000)]
    before = dataclasses.replace(L72, huge_zero_pfn=None)
    after = dataclasses.replace(L72, huge_zero_pfn=huge_zero)
    classifier = Classifier.from_tables(before, [], list(memmap), [], reload=lambda: ([], list(memmap)))

    def special_pmd(pfn: int) -> int:
        return (pfn << 12) | HUGE_BITS | 1 << x86_64.SPECIAL_BIT

    fake(monkeypatch, classifier, huge_zero, level=Level.PMD, entry=special_pmd, layouts=(before, after))
    result = pipeline.audit(RUNNING)
    assert rule_ids(result) == [] and result.stats.withdrawn == 1
    # the VMA is reported as the second read saw it
    (report,) = result.vmas
    assert dict(report.pages_by_kind) == {PageKind.HUGE_ZERO.value: 512}

    # The control: the same PMD with a layout that never learns of the folio
    # is reported.
    classifier = Classifier.from_tables(before, [], list(memmap), [], reload=lambda: ([], list(memmap)))
    fake(monkeypatch, classifier, huge_zero, level=Level.PMD, entry=special_pmd, layouts=(before,))
    assert rule_ids(pipeline.audit(RUNNING)) == ["special-outside-pfnmap"]


def test_a_dump_is_read_once(monkeypatch) -> None:
    """A core dump does not change: its findings stand without a second read."""
    classifier = ChangingClassifier({DEVICE_PFN: PageKind.DEVICE_PRIVATE}, {})
    walkers = fake(monkeypatch, classifier, DEVICE_PFN)
    result = pipeline.audit(DUMP)
    assert rule_ids(result) == ["device-private-present"]
    assert classifier.refreshes == 0 and len(walkers) == 1 and result.stats.withdrawn == 0


def test_a_vma_without_findings_is_read_once(monkeypatch) -> None:
    classifier = ChangingClassifier({}, {})
    walkers = fake(monkeypatch, classifier, RAM_PFN)
    result = pipeline.audit(RUNNING)
    assert rule_ids(result) == [] and len(walkers) == 1 and classifier.refreshes == 0


def test_confirm_findings_keeps_the_second_reads_findings_that_the_first_made() -> None:
    def finding(rule: str, start: int, end: int) -> Finding:
        v = vma(1, "x")
        return Finding(rule=rule, severity=Severity.ERROR, vma=v, start=start, end=end, count=1, message=rule)

    first = [finding("a", 0x1000, 0x3000), finding("b", 0x5000, 0x6000)]
    again = [finding("a", 0x2000, 0x4000), finding("b", 0x6000, 0x7000), finding("c", 0x1000, 0x2000)]
    assert confirm_findings(first, again) == [again[0]]
    assert confirm_findings([], again) == [] and confirm_findings(first, []) == []
