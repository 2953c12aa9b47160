# SPDX-License-Identifier: GPL-2.0-or-later
"""The benchmark's own face and its floor: the summary tables written to a log
keep every cell whole, messages holding brackets are not eaten as rich markup,
and the floor reads exactly the page tables the audit reads."""

import io
from pathlib import Path
from typing import Iterator

from rich.console import Console

from drgn_p2p import pipeline
from drgn_p2p.lab import bench
from drgn_p2p.lab.bench_measure import audit_reads, time_reads
from drgn_p2p.records import Level, Vma
from drgn_p2p.walk import PageTableWalker, Process

from .fakephys import pte
from .layouts import L72, VM_FLAGS_ANON
from .test_pipeline_faults import FakeMm, FakeProgram, StubClassifier
from .test_walk import VA, Tables


def _measurement(scope: str, method: str, target: str, times, **extra) -> bench.Measurement:
    record = {"times_s": times, "slots": 262144, "present": 262144, "hwm_kib": 380000,
              "hwm_startup_kib": 370000, "startup_s": 14.0, **extra}
    return bench.Measurement(scope, 1024, method, target, record)


def _doc(results):
    return {"ratios": bench.ratios(results), "startup": bench.startup(results)}


RESULTS = [
    _measurement("4k-1024M", "pagemap", "pagemap", [0.5, 0.6, 0.7]),
    _measurement("4k-1024M", "audit", "kcore", [1.0, 2.0, 3.0], setup_s=[0.1], floor_s=[0.5, 0.5, 0.5],
                 floor_checked_s=[0.9, 1.0, 1.1]),
    _measurement("4k-1024M", "audit", "qemu", [0.3], floor_s=[0.2]),
    _measurement("4k-1024M", "follow", "kcore", [300.0], sampled=4096),
]


def test_tables_in_a_log_are_written_whole() -> None:
    out = io.StringIO()
    log = Console(file=out, width=80, force_terminal=False, highlight=False)  # what rich picks for a pipe
    bench.print_tables(_doc(RESULTS), RESULTS, Path("/results/results.md"), console=log)
    text = out.getvalue()
    for cell in ("drgn-p2p audit, live /proc/kcore (guest)", "sampled 4096 pages, extrapolated",
                 "M entries/s above setup", "audit time ÷ floor (live)", "4k-1024M"):
        assert cell in text, cell
    assert "the same tables in Markdown: /results/results.md" in text


def test_messages_with_brackets_survive_markup() -> None:
    out = io.StringIO()
    Console(file=out, width=400, highlight=False).print(
        bench.results_message(Path("/r[x]"), "matplotlib is not installed (pip install 'drgn-p2p[bench]')"))
    assert "pip install 'drgn-p2p[bench]'" in out.getvalue()
    assert "/r[x]" in out.getvalue()


def test_floor_ratio_is_audit_time_over_floor_time() -> None:
    row = bench.ratios(RESULTS)[0]
    assert row["audit_live_over_floor"] == 2.0 / 0.5  # medians
    assert row["audit_qemu_over_floor"] == 0.3 / 0.2
    assert row["floor_checked_live_over_floor"] == 1.0 / 0.5
    assert row["audit_live_over_pagemap"] == 0.6 / 2.0
    markdown = bench.markdown({**_doc(RESULTS), "meta": {k: "x" for k in (
        "started", "kernel", "memory", "smp", "accel", "host", "repeat")}, "notes": {}}, RESULTS)
    assert "| 4k-1024M | 4× | 1.5× | 2× | 0.3×" in markdown


def test_floor_reads_exactly_the_tables_the_audit_reads(monkeypatch) -> None:
    tables = Tables()
    tables.map(VA, pte(0x1000))
    tables.map(VA + (2 << 20), pte(0x1001))  # a second PTE table
    memory = tables.memory()

    def for_each_process(prog, pids=(), comms=(), on_fault=None) -> Iterator[Process]:
        yield Process(100, "p", FakeMm(100), 1)

    def for_mm(cls, prog, layout, mm) -> PageTableWalker:
        return cls(memory.read, layout, tables.root)

    def process_vmas(prog, process, start=0, end=1 << 64, layout=None) -> Iterator[Vma]:
        yield Vma(pid=100, comm="p", mm=1, address=2, start=VA, end=VA + (4 << 20), flags=VM_FLAGS_ANON,
                  pgoff=VA >> 12, file=None, ops=None)

    monkeypatch.setattr(pipeline, "read_layout", lambda prog: L72)
    monkeypatch.setattr(pipeline, "Classifier", StubClassifier)
    monkeypatch.setattr(pipeline, "for_each_process", for_each_process)
    monkeypatch.setattr(pipeline, "process_vmas", process_vmas)
    monkeypatch.setattr(PageTableWalker, "for_mm", classmethod(for_mm))

    reads = audit_reads(FakeProgram(), [100])
    assert [phys for phys, _ in reads] == memory.reads
    # PGD, P4D, PUD, PMD and the two PTE tables of the 5-level tables, once each.
    assert len(reads) == 6 and len(set(reads)) == 6
    assert pipeline.PageTableWalker is PageTableWalker  # put back

    class Prog:
        def __init__(self) -> None:
            self.reads = []

        def read(self, phys: int, size: int, physical: bool) -> bytes:
            assert physical
            self.reads.append((phys, size))
            return memory.read(phys, size)

    prog = Prog()
    assert time_reads(prog, reads) >= 0
    assert prog.reads == reads


def test_each_load_is_a_scope_and_the_small_processes_one_together() -> None:
    loads = {load.mode: load for load in bench.default_loads((1024,), small=3)}
    assert bench.scope_args(loads["small"], [11, 12, 13]) == ["--pid", "11", "--pid", "12", "--pid", "13"]
    assert bench.scope_args(loads["4k"], [42]) == ["--pid", "42"]
