# SPDX-License-Identifier: GPL-2.0-or-later
"""
Benchmark stages
----------------

Where an audit's time goes, stage by stage, by sampling: a CPU-time timer
(``ITIMER_PROF``) interrupts the audit every millisecond, and each sample is
charged to the stage of the innermost frame on the Python stack that belongs
to one (:data:`STAGES`). Sampling leaves the audit's code as it is and its
cost out of the figures (a deterministic profiler such as cProfile charges
every small function its own overhead and distorts the split); only the
standard library is used, so the measurement runs in any guest.

The stages follow the pipeline: finding the processes, listing their VMAs,
the page-table walk (its reads apart), judging the tables' entries (scan,
decode, classify, coalesce), the rules, the GUP predictions, the per-VMA
bookkeeping of :func:`drgn_p2p.pipeline.audit_vma`, and the per-call set-up.
"""

import signal
import time
from types import FrameType
from typing import Callable, Dict, Iterable, List, Optional, Tuple

__all__ = ("STAGES", "stage_of_stack", "sample_stages")

#: Stage → the ``(module, function name)`` pairs whose frames belong to it.
STAGES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "setup": (("drgn_p2p.classify", "__init__"), ("drgn_p2p.layout", "read_layout"),
              ("drgn_p2p.pipeline", "select_rules")),
    "processes": (("drgn_p2p.tasks", "for_each_process"),),
    "vmas": (("drgn_p2p.walk", "process_vmas"), ("drgn_p2p.walk", "for_mm")),
    "table reads": (("drgn_p2p.walk", "_entry"),),
    "walk": (("drgn_p2p.walk", "_walk"), ("drgn_p2p.walk", "_table"), ("drgn_p2p.walk", "leaves")),
    "scan, decode, classify": (
        ("drgn_p2p.pipeline", "_segments"), ("drgn_p2p.scan", "uniform_run"), ("drgn_p2p.scan", "pieces"),
        ("drgn_p2p.coalesce", "coalesce_segments"), ("drgn_p2p.arch.x86_64", "decode_leaf"),
        ("drgn_p2p.arch.arm64", "decode_leaf"), ("drgn_p2p.classify", "classify"),
        ("drgn_p2p.classify", "span_info"), ("drgn_p2p.classify", "folio_facts"),
    ),
    "rules": (("drgn_p2p.rules", "evaluate_run"), ("drgn_p2p.rules", "evaluate_vma"),
              ("drgn_p2p.rules", "add"), ("drgn_p2p.rules", "summary"), ("drgn_p2p.coalesce", "merge_findings")),
    "gup": (("drgn_p2p.gup", "segments"), ("drgn_p2p.gup", "vma_shape")),
    "per-VMA bookkeeping": (("drgn_p2p.pipeline", "audit_vma"),),
}

#: What a sample outside every stage (but inside ``audit()``) is charged to.
OTHER = "other"

_BY_NAME: Dict[Tuple[str, str], str] = {key: stage for stage, keys in STAGES.items() for key in keys}


def stage_of_stack(stack: Iterable[Tuple[str, str]]) -> str:
    """The stage of a stack given innermost frame first as ``(module, function)``."""
    for key in stack:
        stage = _BY_NAME.get(key)
        if stage is not None:
            return stage
    return OTHER


def _stack(frame: Optional[FrameType]) -> List[Tuple[str, str]]:
    names = []
    while frame is not None:
        names.append((frame.f_globals.get("__name__", ""), frame.f_code.co_name))
        frame = frame.f_back
    return names


def sample_stages(call: Callable[[], object], min_cpu_s: float = 1.0, max_calls: int = 50,
                  interval_s: float = 0.001) -> Dict[str, object]:
    """Run *call* until it has used *min_cpu_s* of CPU time (at most
    *max_calls* times, at least once) while sampling; return ``{"samples":
    n, "calls": n, "shares": {stage: fraction of samples}}``."""
    counts: Dict[str, int] = {}

    def on_sample(signum: int, frame: Optional[FrameType]) -> None:
        stage = stage_of_stack(_stack(frame))
        counts[stage] = counts.get(stage, 0) + 1

    previous = signal.signal(signal.SIGPROF, on_sample)
    signal.setitimer(signal.ITIMER_PROF, interval_s, interval_s)
    calls = 0
    started = time.process_time()
    try:
        while calls < max_calls and (calls == 0 or time.process_time() - started < min_cpu_s):
            call()
            calls += 1
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, previous)
    total = sum(counts.values())
    return {"samples": total, "calls": calls,
            "shares": {stage: counts.get(stage, 0) / total for stage in (*STAGES, OTHER)} if total else {}}
