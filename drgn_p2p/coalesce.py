# SPDX-License-Identifier: GPL-2.0-or-later
"""
Coalesce
--------

Turn a VMA's stream of (leaf, page info) pairs into :class:`~drgn_p2p.records.Run`
records, and a stream of findings into merged findings. Both stream with O(1)
memory: a run (or a finding per rule) is held only until the next item shows
it cannot grow.

Leaves join a run when they continue it in virtual address space and agree in
everything a rule reads: level, entry kind, special/devmap/writable bits, swap
type, the :class:`~drgn_p2p.records.PfnInfo` (page kind, pgmap, owner,
memmap readability) and whether the PFN is the VMA's linear PFN
(``vm_pgoff + (va - vm_start) >> PAGE_SHIFT``, which the PFNMAP COW exception
reads). So a rule that judges ``run.first`` judges every leaf of the run.
"""

from typing import Dict, Iterable, Iterator, Optional, Tuple

from .records import Finding, Leaf, PfnInfo, Run, Vma

__all__ = ("coalesce", "coalesce_segments", "merge_findings")

_PAGE_SHIFT = 12  # linearity is in PAGE_SIZE units; x86-64 and arm64-4K


def _key(leaf: Leaf, vma: Vma) -> Tuple[object, ...]:
    pfn = leaf.pfn
    linear = pfn is not None and pfn == vma.pgoff + ((leaf.va - vma.start) >> _PAGE_SHIFT)
    return (leaf.level, leaf.kind, leaf.special, leaf.devmap, leaf.writable, leaf.swap_type, linear)


def coalesce(vma: Vma, leaves_with_info: Iterable[Tuple[Leaf, PfnInfo]]) -> Iterator[Run]:
    """Group adjacent leaves of *vma* (in ascending VA order) into runs."""
    return coalesce_segments(vma, ((leaf, page, 1) for leaf, page in leaves_with_info))


def coalesce_segments(vma: Vma, segments: Iterable[Tuple[Leaf, PfnInfo, int]]) -> Iterator[Run]:
    """Like :func:`coalesce`, for ``(leaf, page, count)`` segments in ascending VA order.

    A segment stands for *count* leaves that follow *leaf* contiguously and
    agree with it in everything :func:`coalesce` compares (as a whole-table
    scan finds them, :mod:`drgn_p2p.scan`); the runs are those the single
    leaves would give.
    """
    first: Optional[Leaf] = None
    info: Optional[PfnInfo] = None
    key: Tuple[object, ...] = ()
    count = 0
    next_va = -1
    for leaf, page, n in segments:
        k = _key(leaf, vma)
        if (
            first is not None
            and leaf.va == next_va
            and k == key
            and (page is info or page == info)
        ):
            count += n
            next_va += n * leaf.size
            continue
        if first is not None:
            yield Run(vma, first, count, info)  # type: ignore[arg-type]
        first, info, key, count = leaf, page, k, n
        next_va = leaf.va + n * leaf.size
    if first is not None:
        yield Run(vma, first, count, info)  # type: ignore[arg-type]


def _merged(a: Finding, b: Finding) -> Finding:
    return Finding(
        a.rule, a.severity, a.vma, a.start, b.end, a.count + b.count, a.message,
        first=a.first, page=a.page, evidence=a.evidence,
    )


def merge_findings(findings: Iterable[Finding]) -> Iterator[Finding]:
    """Merge findings of one rule that continue each other.

    Two findings merge when they have the same VMA, rule and message and the
    second starts where the first ends; the result keeps the first's leaf,
    page and evidence and sums the counts. Findings of different rules may
    interleave (``evaluate_run`` yields several per run): one pending finding
    is kept per rule, and all are flushed, in start order, when the VMA
    changes and at the end.
    """
    pending: Dict[str, Finding] = {}
    vma: Optional[Vma] = None
    for f in findings:
        if vma is not None and f.vma is not vma and f.vma != vma:
            yield from sorted(pending.values(), key=lambda p: (p.start, p.rule))
            pending.clear()
        vma = f.vma
        prev = pending.get(f.rule)
        if prev is not None:
            if prev.end == f.start and prev.message == f.message:
                pending[f.rule] = _merged(prev, f)
                continue
            yield prev
        pending[f.rule] = f
    yield from sorted(pending.values(), key=lambda p: (p.start, p.rule))
