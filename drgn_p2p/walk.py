# SPDX-License-Identifier: GPL-2.0-or-later
"""
Walk
----

Enumerate processes and VMAs, and walk each VMA's page tables one whole
4 KiB table per physical read, yielding the raw leaf entries in its range.

The walk never uses ``follow_phys()``: a table is read once and its 512
entries are examined in Python, and the last table read at each level is
kept so that neighbouring VMAs sharing a table do not read it again. Memory
stays flat: everything is a generator.
"""

import functools
import struct
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import drgn
from drgn.helpers.linux.mm import for_each_vma, virt_to_phys
from drgn.helpers.linux.pid import for_each_task

from .arch import for_layout
from .records import Layout, Level, Vma

__all__ = (
    "Process",
    "TableFault",
    "RawLeaf",
    "for_each_process",
    "process_vmas",
    "PageTableWalker",
)

_TABLE_ENTRIES = 512
_TABLE_FORMAT = struct.Struct("<512Q")


@dataclass(frozen=True)
class Process:
    """One address space: the first task found using a ``struct mm_struct``."""

    pid: int
    comm: str
    mm: drgn.Object  # struct mm_struct *
    threads: int


@dataclass(frozen=True)
class TableFault:
    """A page-table page that could not be read (``FaultError``)."""

    level: Level  # level of the entries the unreadable table holds
    va: int  # first address the table's entries map
    phys: int
    message: str


#: ``(va, level, raw)`` of one non-empty leaf entry.
RawLeaf = Tuple[int, Level, int]


def for_each_process(
    prog: drgn.Program,
    pids: Sequence[int] = (),
    comms: Sequence[str] = (),
) -> Iterator[Process]:
    """Yield each user address space once.

    Kernel threads (``mm == NULL``) are skipped; threads and processes that
    share an mm (``CLONE_VM``) are folded into the first task seen.

    :param pids: only these thread-group ids (empty: all).
    :param comms: only tasks with these names (empty: all).
    """
    seen: Dict[int, List] = {}
    order: List[int] = []
    for task in for_each_task(prog):
        try:
            mm = task.mm.read_()
            if not mm:
                continue
            tgid = task.tgid.value_()
            comm = task.comm.string_().decode(errors="replace")
        except drgn.FaultError:
            continue
        if pids and tgid not in pids:
            continue
        if comms and comm not in comms:
            continue
        key = mm.value_()
        entry = seen.get(key)
        if entry is None:
            seen[key] = [tgid, comm, mm, 1]
            order.append(key)
        else:
            entry[3] += 1
    for key in order:
        tgid, comm, mm, threads = seen[key]
        yield Process(tgid, comm, mm, threads)


def _vma_flags(vma: drgn.Object) -> int:
    # vm_flags became a const member of a union with __vm_flags in v6.3
    # (commit bc292ab00f6c, "mm: introduce vma->vm_flags wrapper functions");
    # reading vm_flags works on every version.
    return vma.vm_flags.value_()


def _vma_file(vma: drgn.Object) -> Optional[str]:
    file = vma.vm_file.read_()
    if not file:
        return None
    try:
        from drgn.helpers.linux.fs import d_path

        return d_path(file.f_path).decode(errors="replace")
    except (drgn.FaultError, LookupError, ValueError):
        try:
            return file.f_path.dentry.d_name.name.string_().decode(errors="replace")
        except drgn.FaultError:
            return "?"


def _symbol_name(prog: drgn.Program, address: int) -> Optional[str]:
    if not address:
        return None
    try:
        return prog.symbol(address).name
    except LookupError:
        return hex(address)


def process_vmas(
    prog: drgn.Program, process: Process, start: int = 0, end: int = 1 << 64
) -> Iterator[Vma]:
    """Yield the :class:`Vma` records of *process* that overlap ``[start, end)``."""
    for vma in for_each_vma(process.mm):
        vm_start = vma.vm_start.value_()
        vm_end = vma.vm_end.value_()
        if vm_end <= start or vm_start >= end:
            continue
        yield Vma(
            pid=process.pid,
            comm=process.comm,
            mm=process.mm.value_(),
            address=vma.value_(),
            start=vm_start,
            end=vm_end,
            flags=_vma_flags(vma),
            pgoff=vma.vm_pgoff.value_(),
            file=_vma_file(vma),
            ops=_symbol_name(prog, vma.vm_ops.value_()),
        )


class PageTableWalker:
    """Walks the page tables of one mm, one whole table per read.

    :param read: ``read(phys, size) -> bytes`` of physical memory; raises
        :class:`drgn.FaultError` when the memory cannot be read.
    :param pgd_phys: physical address of the top-level table (``mm->pgd``).
    """

    def __init__(
        self,
        read: Callable[[int, int], bytes],
        layout: Layout,
        pgd_phys: int,
    ) -> None:
        self._read = read
        self._pgd_phys = pgd_phys
        arch = for_layout(layout)
        self._is_table = arch.is_table
        self._table_phys = functools.partial(arch.table_phys, layout=layout)
        if layout.levels == 5:
            self._levels = (Level.PGD, Level.P4D, Level.PUD, Level.PMD, Level.PTE)
            self._shifts = (48, 39, 30, 21, 12)
        else:
            # The P4D level is folded: PGD entries point at PUD tables.
            self._levels = (Level.PGD, Level.PUD, Level.PMD, Level.PTE)
            self._shifts = (39, 30, 21, 12)
        self._cache: Dict[int, Tuple[int, Tuple[int, ...]]] = {}
        self.tables_read = 0
        self.faults = 0

    @classmethod
    def for_mm(cls, prog: drgn.Program, layout: Layout, mm: drgn.Object) -> "PageTableWalker":
        """Walker for ``struct mm_struct *`` *mm* of *prog*."""
        pgd_phys = virt_to_phys(prog, mm.pgd.value_()).value_()

        def read(phys: int, size: int) -> bytes:
            return prog.read(phys, size, True)

        return cls(read, layout, pgd_phys)

    def _table(self, depth: int, phys: int) -> Tuple[int, ...]:
        cached = self._cache.get(depth)
        if cached is not None and cached[0] == phys:
            return cached[1]
        data = self._read(phys, 4096)
        self.tables_read += 1
        entries = _TABLE_FORMAT.unpack(data)
        self._cache[depth] = (phys, entries)
        return entries

    def walk(self, start: int, end: int) -> Iterator[Union[RawLeaf, TableFault]]:
        """Yield every non-empty leaf entry mapping ``[start, end)``, in address order.

        Leaves are PTEs, huge PMD/PUD leaves (``_PAGE_PSE``), and any
        non-present, non-zero entry at PUD/PMD/PTE level (swap-format
        entries). An unreadable table yields a :class:`TableFault` and the
        walk continues after it.
        """
        yield from self._walk(0, self._pgd_phys, start, end, 0)

    def _walk(
        self, depth: int, phys: int, start: int, end: int, base: int
    ) -> Iterator[Union[RawLeaf, TableFault]]:
        level = self._levels[depth]
        shift = self._shifts[depth]
        try:
            entries = self._table(depth, phys)
        except drgn.FaultError as e:
            self.faults += 1
            yield TableFault(level, max(start, base), phys, str(e))
            return
        span = 1 << shift
        first = (start - base) >> shift if start > base else 0
        last = min(_TABLE_ENTRIES - 1, (end - 1 - base) >> shift)
        if depth == len(self._levels) - 1:
            for i in range(first, last + 1):
                raw = entries[i]
                if raw:
                    yield (base + (i << shift), level, raw)
            return
        is_table = self._is_table
        for i in range(first, last + 1):
            raw = entries[i]
            if not raw:
                continue
            va = base + (i << shift)
            if is_table(raw, level):
                yield from self._walk(
                    depth + 1, self._table_phys(raw), max(start, va), min(end, va + span), va
                )
            else:
                # A huge leaf, a swap-format entry, or (at PGD/P4D level,
                # never valid for user space) something the decoder will
                # report as garbage rather than have it skipped.
                yield (va, level, raw)

    def path(self, va: int) -> List[Tuple[Level, int, int]]:
        """The entries translating *va*, top level first: ``(level, entry_phys, raw)``.

        Stops at the first leaf or non-present entry (crash's ``vtop`` walk).
        """
        result: List[Tuple[Level, int, int]] = []
        phys = self._pgd_phys
        for depth, (level, shift) in enumerate(zip(self._levels, self._shifts)):
            index = (va >> shift) & (_TABLE_ENTRIES - 1)
            raw = self._table(depth, phys)[index]
            result.append((level, phys + index * 8, raw))
            if not self._is_table(raw, level):
                break
            phys = self._table_phys(raw)
        return result
