# SPDX-License-Identifier: GPL-2.0-or-later
"""The audit of a target that changes or breaks under it: a task list cut
short, a process whose mm was freed, one whose VMA tree turns to garbage
mid-read, and an unreadable page table are each recorded (summary counts and
JSON faults) while every other process is still audited; and names read from
the target (quotes, newlines, ESC, rich markup) survive JSON and the text
report. The kernel is faked: the stages that read it are replaced."""

import io
import json
from typing import Iterator

import drgn
import pytest
from report_checkers import check_audit_json
from rich.console import Console

from drgn_p2p import pipeline
from drgn_p2p.records import NO_FOLIO_FACTS, Level, PageKind, PfnInfo, Vma
from drgn_p2p.report import audit_json, print_audit, safe_text
from drgn_p2p.walk import PageTableWalker, Process

from .fakephys import pte
from .layouts import L72, VM_FLAGS_ANON
from .test_walk import VA, Tables

HOSTILE = '[/x]\x1b[2J"\\\n\t'  # a comm of 15 bytes: markup, ESC, quote, backslash, newline, tab


class StubClassifier:
    """Every PFN is RAM."""

    def __init__(self, prog: object, layout: object) -> None:
        self.layout = layout
        self.faults = []

    def classify(self, pfn):
        return PfnInfo(PageKind.RAM)

    def span(self, pfn: int):
        return pfn, pfn + 1

    def span_info(self, pfn: int):
        return pfn, pfn + 1, self.classify(pfn)

    def span_around_zero_pages(self, pfn: int):
        return None

    def folio_facts(self, pfn: int):
        return NO_FOLIO_FACTS


class FakeProgram:
    """Stands for a ``drgn.Program`` of a core dump (*flags* 0) or a running kernel (``IS_LIVE``)."""

    def __init__(self, flags: drgn.ProgramFlags = drgn.ProgramFlags(0)) -> None:
        self.flags = flags


class FakeMm:
    """Stands for a ``struct mm_struct *``; its value is the pid, for the fakes below."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def value_(self) -> int:
        return self.pid


def vma(pid: int, comm: str, start: int = VA, end: int = VA + (4 << 20)) -> Vma:
    return Vma(pid=pid, comm=comm, mm=0xFFFF_8880_0000_1000 + pid, address=0xFFFF_8880_0100_0000 + pid,
               start=start, end=end, flags=VM_FLAGS_ANON, pgoff=VA >> 12, file=None, ops=None)


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch):
    good = Tables()
    good.map(VA, pte(0x1000))
    good.map(VA + 0x1000, pte(0x1001))
    broken = Tables()
    broken.map(VA, pte(0x2000))
    broken.map(VA + (2 << 20), pte(0x2001))
    broken_mem = broken.memory()
    del broken_mem.pages[broken.table_of(VA, Level.PTE)]
    memories = {100: good.memory(), 400: broken_mem}
    roots = {100: good.root, 400: broken.root}
    processes = [
        Process(100, "good", FakeMm(100), 1),
        Process(200, "exited", FakeMm(200), 1),
        Process(300, "changing", FakeMm(300), 1),
        Process(400, HOSTILE, FakeMm(400), 1),
    ]

    def for_each_process(prog, pids=(), comms=(), on_fault=None) -> Iterator[Process]:
        on_fault("task list cut after 4 tasks: FaultError: could not read memory: 0xdead000", None)
        yield from processes

    def for_mm(cls, prog, layout, mm) -> PageTableWalker:
        pid = mm.value_()
        if pid == 200:
            raise drgn.FaultError("could not read memory", 0xFFFF_8880_0000_1000)
        if pid not in memories:
            return PageTableWalker(memories[100].read, layout, roots[100])
        return PageTableWalker(memories[pid].read, layout, roots[pid])

    def process_vmas(prog, process, start=0, end=1 << 64, layout=None) -> Iterator[Vma]:
        yield vma(process.pid, process.comm)
        if process.pid == 300:
            raise ValueError("unknown maple node type 7")

    monkeypatch.setattr(pipeline, "read_layout", lambda prog: L72)
    monkeypatch.setattr(pipeline, "Classifier", StubClassifier)
    monkeypatch.setattr(pipeline, "for_each_process", for_each_process)
    monkeypatch.setattr(pipeline, "process_vmas", process_vmas)
    monkeypatch.setattr(PageTableWalker, "for_mm", classmethod(for_mm))


def test_audit_records_what_it_could_not_read_and_goes_on(fake_kernel) -> None:
    result = pipeline.audit(FakeProgram())
    assert result.stats.processes == 4
    assert result.stats.process_faults == 3  # the task list, pid 200, pid 300
    assert result.stats.table_faults == 1  # pid 400's PTE table
    assert sorted({r.vma.pid for r in result.vmas}) == [100, 400]
    messages = [f.message for _, f in result.faults]
    assert any(m.startswith("task list cut") for m in messages)
    assert any(m.startswith("pid 200 (exited)") and "FaultError" in m for m in messages)
    assert any(m.startswith("pid 300 (changing)") and "maple node" in m for m in messages)
    good = next(r for r in result.vmas if r.vma.pid == 100)
    assert dict(good.leaves_by_level) == {"pte": 2}
    broken = next(r for r in result.vmas if r.vma.pid == 400)
    assert broken.unreadable_tables == 1 and dict(broken.leaves_by_level) == {"pte": 1}

    doc = json.loads(json.dumps(audit_json(result, result.layout)))
    check_audit_json(doc)
    assert doc["summary"]["unreadable_tables"] == 1
    assert doc["summary"]["unreadable_processes"] == 3
    assert len(doc["faults"]) == 4
    assert sorted((f["scope"], f["pid"]) for f in doc["faults"]) == [
        ("process", 200), ("process", 300), ("table", 400), ("tasks", None)]
    assert [v["comm"] for v in doc["vmas"] if v["pid"] == 400] == [HOSTILE]


def test_text_report_prints_hostile_names_as_text(fake_kernel) -> None:
    result = pipeline.audit(FakeProgram())
    out = io.StringIO()
    print_audit(Console(file=out, width=400, force_terminal=True, highlight=False), result, result.layout, verbose=True)
    text = out.getvalue()
    assert "[/x]\\x1b[2J\"\\\\n\\t" in text
    assert "\x1b[2J" not in text  # the name's escape sequence never reaches the terminal
    assert "3 processes unreadable" in text


@pytest.mark.parametrize(
    "name, shown",
    [
        ("plain", "plain"),
        ("[bold]x[/]", "\\[bold]x\\[/]"),
        ("a\nb\tc\x1b[31m", "a\\nb\\tc\\x1b[31m"),
        ("\x1b[1m[/x]", "\\x1b[1m\\[/x]"),
        ("", ""),
        (None, ""),
    ],
)
def test_safe_text(name, shown) -> None:
    assert safe_text(name) == shown
    if name:
        out = io.StringIO()
        Console(file=out, width=200, highlight=False).print(safe_text(name))
        assert out.getvalue() == "".join(c if c.isprintable() else repr(c)[1:-1] for c in name) + "\n"


def test_unknown_rule_and_kind_are_usage_errors_before_any_target() -> None:
    from drgn_p2p.errors import UsageError

    with pytest.raises(UsageError, match="unknown rule 'no-such-rule'"):
        pipeline.check_selection(rules=["no-such-rule"])
    with pytest.raises(UsageError, match="unknown page kind 'no-such-kind'"):
        pipeline.check_selection(kinds=["no-such-kind"])
    pipeline.check_selection(rules=[r.id for r in pipeline.RULES], kinds=[k.value for k in PageKind])
