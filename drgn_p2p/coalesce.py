# SPDX-License-Identifier: GPL-2.0-or-later
"""
Coalesce
--------

Turn a VMA's stream of (leaf, page info) pairs into :class:`~drgn_p2p.records.Run`
records, and a stream of findings into merged findings. Both stream with O(1)
memory: a run (or a finding per rule) is held only until the next item shows
it cannot grow. :func:`group_findings` then gathers the info findings that
every process repeats (the vDSO of each shell) into one group for reports.

Leaves join a run when they continue it in virtual address space and agree in
everything a rule reads: level, entry kind, special/devmap/writable bits, swap
type, the :class:`~drgn_p2p.records.PfnInfo` (page kind, pgmap, owner,
memmap readability) and whether the PFN is the VMA's linear PFN
(``vm_pgoff + (va - vm_start) >> PAGE_SHIFT``, which the PFNMAP COW exception
reads). So a rule that judges ``run.first`` judges every leaf of the run.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from .records import Finding, Leaf, PfnInfo, Run, Severity, Vma

__all__ = ("coalesce", "coalesce_segments", "merge_findings", "FindingGroup", "group_findings")

def _key(leaf: Leaf, vma: Vma) -> Tuple[object, ...]:
    pfn = leaf.pfn
    # Linearity is in PAGE_SIZE units (vm_pgoff counts pages).
    linear = pfn is not None and pfn == vma.pgoff + ((leaf.va - vma.start) >> leaf.page_shift)
    return (leaf.level, leaf.kind, leaf.special, leaf.devmap, leaf.writable, leaf.swap_type, linear)


def coalesce(vma: Vma, leaves_with_info: Iterable[Tuple[Leaf, PfnInfo]]) -> Iterator[Run]:
    """Group adjacent leaves of *vma* (in ascending VA order) into runs."""
    return coalesce_segments(vma, ((leaf, page, 1) for leaf, page in leaves_with_info))


def coalesce_segments(vma: Vma, segments: Iterable[Tuple[Optional[Leaf], PfnInfo, int]]) -> Iterator[Run]:
    """Like :func:`coalesce`, for ``(leaf, page, count)`` segments in ascending VA order.

    A segment stands for *count* leaves that follow *leaf* contiguously and
    agree with it in everything :func:`coalesce` compares (as a whole-table
    scan finds them, :mod:`drgn_p2p.scan`); the runs are those the single
    leaves would give. A segment whose leaf is ``None`` continues the run
    being built (the scan has shown that it does).
    """
    first: Optional[Leaf] = None
    info: Optional[PfnInfo] = None
    key: Tuple[object, ...] = ()
    count = 0
    next_va = -1
    for leaf, page, n in segments:
        if leaf is None:
            assert first is not None, "a continuation with no run to continue"
            count += n
            next_va += n * first.size
            continue
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


@dataclass(frozen=True)
class FindingGroup:
    """Findings that are one observation repeated across processes, or a single finding.

    ``findings`` keeps every member in input order; ``first`` stands for the group.
    """

    findings: Tuple[Finding, ...]

    @property
    def first(self) -> Finding:
        return self.findings[0]

    @property
    def pids(self) -> Tuple[int, ...]:
        """The members' processes, each once, in order."""
        return tuple(dict.fromkeys(f.vma.pid for f in self.findings))


def _group_key(f: Finding) -> Tuple[object, ...]:
    # What makes two processes' VMAs "the same mapping": never the address
    # (ASLR) nor the message (it counts the pages each process touched).
    vma = f.vma
    return (
        f.rule, vma.ops, vma.file, vma.flags,
        f.first.level if f.first else None, f.first.kind if f.first else None,
        f.page.kind if f.page else None, f.page.owner if f.page else None,
    )


def group_findings(findings: Iterable[Finding]) -> List[FindingGroup]:
    """*findings* as groups, in order of each group's first member.

    Info findings of one rule on the same kind of VMA (same ``vm_ops``, file
    and flags, same entry level and page kind) in two or more processes form
    one group; every other finding, and all errors and warnings, is a group
    of its own, so that each keeps its address.
    """
    order: List[object] = []
    members: Dict[object, List[Finding]] = {}
    for index, f in enumerate(findings):
        key: object = ("info", _group_key(f)) if f.severity == Severity.INFO else index
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(f)
    groups: List[FindingGroup] = []
    for key in order:
        found = members[key]
        if len({f.vma.pid for f in found}) > 1:
            groups.append(FindingGroup(tuple(found)))
        else:
            groups.extend(FindingGroup((f,)) for f in found)
    return groups
