# SPDX-License-Identifier: GPL-2.0-or-later
"""
Tasks
-----

Find the user address spaces of a kernel through its PID table
(``init_pid_ns.idr``), the way drgn's ``find_task()`` and ``for_each_task()``
do, but so that a damaged target costs only what it lost.

A filtered vmcore can lack slab pages (makedumpfile taking them for user
pages on a kernel it does not support): a ``struct xa_node`` of the PID table,
a ``struct pid``, a ``struct task_struct``. drgn's ``for_each_task()`` stops at
the first of them, and every process after it is lost. Here an unreadable
node skips the PIDs below it, an unreadable ``struct pid`` or task skips that
task, and each loss is told to *on_fault*; the processes behind a lost part
of the PID table are then looked for on the task list (``init_task.tasks``),
read from both ends. A single PID is looked up with drgn's ``find_task()``,
which reads only the nodes on its own path.
"""

from collections import Counter
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import drgn
from drgn.helpers.linux.pid import find_task, for_each_task, pid_task

from .walk import Process

__all__ = ("for_each_process", "find_process")

#: What reading a task raises on a damaged or changing target (a live kernel
#: whose tasks exit under the walk).
TASK_ERRORS = (drgn.FaultError, drgn.BadDataError, drgn.ObjectAbsentError, ValueError, LookupError, OverflowError)

#: Told ``(message, pid)`` of each part of the PID table, task list or task
#: that cannot be read; *pid* is the thread-group id lost, None when unknown.
OnFault = Callable[[str, Optional[int]], None]

#: PID_MAX_LIMIT on 64-bit: a task list longer than this is corrupt (or looping).
MAX_TASKS = 4 * 1024 * 1024

#: Bits of index per XArray level (``XA_CHUNK_SHIFT`` without CONFIG_BASE_SMALL).
_XA_CHUNK_SHIFT = 6


def _ignore(message: str, pid: Optional[int]) -> None:
    pass


def _xa_entries(prog: drgn.Program, xa: drgn.Object, on_fault: OnFault) -> Iterator[Tuple[int, int]]:
    """``(index, entry)`` of every pointer stored in ``struct xarray *xa``, in index order.

    Like drgn's ``xa_for_each()``, but a node that cannot be read, or whose
    ``shift`` is not its parent's less ``XA_CHUNK_SHIFT`` (a corrupt tree, or
    one read while it changes), is told to *on_fault* and skipped with the
    indices below it; so the walk ends, whatever the nodes hold.
    """
    node_type = prog.type("struct xa_node *")
    # entry, first index, the shift its node must have (None: the root's)
    stack: List[Tuple[int, int, Optional[int]]] = [(xa.xa_head.value_(), 0, None)]
    while stack:
        entry, index, want = stack.pop()
        if entry & 3 == 2 and entry > 4096:  # xa_is_node()
            node = drgn.Object(prog, node_type, entry - 2)  # xa_to_node()
            try:
                shift = node.shift.value_()
                slots = [slot.value_() for slot in node.slots.read_()]
            except TASK_ERRORS as e:
                on_fault(f"PID table node {entry - 2:#x} (PIDs from {index}) cannot be read: {e}", None)
                continue
            if want is None:  # the root: any whole number of levels that fits an index
                want = shift if shift % _XA_CHUNK_SHIFT == 0 and shift < 64 else -1
            if shift != want:
                on_fault(f"PID table node {entry - 2:#x} (PIDs from {index}) is corrupt: shift {shift}", None)
                continue
            below = shift - _XA_CHUNK_SHIFT
            stack.extend((slot, index + (i << shift), below) for i, slot in reversed(list(enumerate(slots))) if slot)
        elif entry and entry & 3 == 0:  # not a value, sibling, retry or zero entry
            yield index, entry


def _pid_table_tasks(prog: drgn.Program, on_fault: OnFault) -> Iterator[drgn.Object]:
    """``struct task_struct *`` of every PID of the initial PID namespace."""
    idr = prog["init_pid_ns"].idr
    xa = idr.idr_rt.address_of_()
    if not _has_member(xa, "xa_head"):
        # Radix trees before v4.20 ("xarray: Add definition of struct xarray"):
        # drgn's iterator, all or nothing.
        yield from for_each_task(prog)
        return
    base = idr.idr_base.value_() if _has_member(idr, "idr_base") else 0
    pid_type = prog.type("struct pid *")
    pidtype_pid = prog["PIDTYPE_PID"].value_()
    for index, entry in _xa_entries(prog, xa, on_fault):
        try:
            task = pid_task(drgn.Object(prog, pid_type, entry), pidtype_pid)
        except TASK_ERRORS as e:
            on_fault(f"pid {index + base}: its struct pid cannot be read: {type(e).__name__}: {e}", index + base)
            continue
        if task:
            yield task


def _has_member(obj: drgn.Object, name: str) -> bool:
    try:
        obj.member_(name)
    except LookupError:
        return False
    return True


def _task_list(prog: drgn.Program, on_fault: OnFault) -> Iterator[drgn.Object]:
    """``struct task_struct *`` of every thread-group leader on the task list
    (``init_task.tasks``), once each: read forwards and, where a task cannot be
    read, backwards from the list's end up to that task, so that it cuts off
    only itself."""
    head = prog["init_task"].tasks.address_of_()
    task_type = prog.type("struct task_struct *")
    offset = drgn.offsetof(task_type.type, "tasks")
    seen = {head.value_()}
    for direction in ("next", "prev"):
        node = head
        while True:
            try:
                node = node.member_(direction).read_()
            except TASK_ERRORS as e:
                on_fault(f"the task list cannot be followed ({direction}) past {node.value_() - offset:#x}: "
                         f"{type(e).__name__}: {e}", None)
                break
            if node.value_() in seen or len(seen) > MAX_TASKS:
                if direction == "next" and node.value_() == head.value_():
                    return  # whole: there is no need to read it backwards
                break
            seen.add(node.value_())
            yield drgn.Object(prog, task_type, node.value_() - offset)


def _tasks(prog: drgn.Program, pids: Sequence[int], on_fault: OnFault) -> Iterator[drgn.Object]:
    """The tasks of *pids* (all of them if empty): through the PID table, and
    where part of it cannot be read, through the task list too."""
    faults: List[str] = []

    def fault(message: str, pid: Optional[int]) -> None:
        faults.append(message)
        on_fault(message, pid)

    found = set()
    if pids:
        for pid in pids:
            try:
                task = find_task(prog, pid)
            except TASK_ERRORS as e:
                fault(f"pid {pid}: cannot be looked up in the PID table: {type(e).__name__}: {e}", pid)
                continue
            if task:
                found.add(pid)
                yield task
    else:
        for task in _pid_table_tasks(prog, fault):
            found.add(task.value_())
            yield task
    if not faults:
        return
    # The processes of the PID table's lost parts are on the task list too.
    for task in _task_list(prog, on_fault):
        try:
            wanted = task.tgid.value_() in set(pids) - found if pids else task.value_() not in found
        except TASK_ERRORS as e:
            on_fault(f"task {task.value_():#x}: cannot be read: {type(e).__name__}: {e}", None)
            continue
        if wanted:
            yield task


def for_each_process(
    prog: drgn.Program,
    pids: Sequence[int] = (),
    comms: Sequence[str] = (),
    on_fault: Optional[OnFault] = None,
) -> Iterator[Process]:
    """Yield each user address space once, in PID order.

    Kernel threads (``mm == NULL``) are skipped; threads and processes that
    share an mm (``CLONE_VM``) are folded into the first task seen. The PID
    table is read to its end before the first process is yielded; a part of
    it, or a task, that cannot be read is skipped, and *on_fault* is told why.
    The processes of a part of the PID table that cannot be read are looked
    for on the task list (``init_task.tasks``) too.

    :param pids: only these thread-group ids (empty: all), each looked up in
        the PID table.
    :param comms: only tasks with these names (empty: all).
    :param on_fault: called with a one-line message and the thread-group id
        lost (None when unknown) for each part of the PID table or task that
        could not be read.
    """
    on_fault = on_fault or _ignore
    wanted = set(pids)
    first: Dict[int, Tuple[int, str, drgn.Object]] = {}  # mm → (tgid, comm, mm) of its first task
    tasks: Counter = Counter()  # mm → tasks using it
    for task in _tasks(prog, pids, on_fault):
        try:
            mm = task.mm.read_()
            if not mm:
                continue
            tgid = task.tgid.value_()
            if wanted and tgid not in wanted:
                continue  # a thread's id: --pid takes thread-group ids
            comm = task.comm.string_().decode(errors="replace")
        except TASK_ERRORS as e:
            on_fault(f"task {task.value_():#x}: cannot be read: {type(e).__name__}: {e}", None)
            continue
        if comms and comm not in comms:
            continue
        first.setdefault(mm.value_(), (tgid, comm, mm))
        tasks[mm.value_()] += 1
    for key, (tgid, comm, mm) in first.items():
        yield Process(tgid, comm, mm, tasks[key])


def find_process(prog: drgn.Program, pid: int, on_fault: Optional[OnFault] = None) -> Optional[Process]:
    """The address space of thread-group *pid*, found through the PID table; None if it has none."""
    return next(iter(for_each_process(prog, pids=[pid], on_fault=on_fault)), None)
