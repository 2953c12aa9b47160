# SPDX-License-Identifier: GPL-2.0-or-later
"""
Benchmark driver
----------------

One measurement of ``scripts/bench``, run in a fresh Python process (on the
host for ``--qemu`` targets, inside the guest for ``/proc/kcore`` and
pagemap) so that its peak RSS is its own::

    python -m drgn_p2p.lab.bench_measure audit   --kcore -s VMLINUX --pid 123 --repeat 3
    python -m drgn_p2p.lab.bench_measure follow  --qemu QMP -s VMLINUX --system --sample 4096
    python -m drgn_p2p.lab.bench_measure pagemap --pid 123 --repeat 3

It prints one JSON object on its last line of output:

``method``, ``target``, ``scope`` (``--system`` live leaves out the measuring
process itself); ``startup_s`` (drgn: opening the program
and loading debug info, kept out of the timings); ``times_s`` (one per
repeat); ``slots`` (leaf slots examined: 4 KiB pages covered by the VMAs
walked); ``vmas``; ``present`` (pages found mapped, where the method tells);
``sampled`` (pages actually translated, for ``follow``); ``hwm_startup_kib``
and ``hwm_kib`` (``VmHWM`` after start-up and at the end) and
``maxrss_kib`` (``getrusage``).

Methods:

``audit``
    ``drgn_p2p.audit(prog, pids=...)`` end to end (layout, classifier, walk,
    decode, classify, coalesce, rules). ``setup_s``: the same call selecting
    no process (layout, classifier, task-list walk), the per-call fixed cost.
    ``floor_s``: the floor, the bare cost of the audit's own page-table reads:
    one more (untimed) audit records every ``(phys, size)`` its walkers read,
    and each repeat then times only ``prog.read(phys, size, True)`` of exactly
    those, in the same order, on the same program (``floor_reads``,
    ``floor_bytes``). ``floor_checked_s``: the same reads, each table also
    taken as one integer and tested with one mask, the least a whole-table
    test in Python adds to the floor. ``audit ÷ floor`` is what everything but reading the
    page tables costs on top of them. ``stages``: where the time of more
    audits of the same scope goes, by sampling (:mod:`drgn_p2p.lab.bench_stages`):
    ``samples``, ``calls`` and ``shares`` (stage → fraction of the samples).
``follow``
    drgn's ``follow_phys(mm, addr)`` for every 4 KiB page of the same VMAs
    (``FaultError`` = not mapped). With ``--sample N`` only N evenly spaced
    pages are translated and the time is extrapolated:
    ``enumeration + per-page time x slots``.
``pagemap``
    The kernel's own walk: ``/proc/PID/maps``, then bulk ``preadv()`` of
    ``/proc/PID/pagemap`` over every VMA (at most 1 MiB per read); the only
    decoding is a count of the present bit, for cross-checking. ``[vsyscall]`` is skipped (it is not in the mm's VMA tree and
    drgn does not see it).
"""

import argparse
import json
import os
import resource
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ("main", "vm_hwm_kib")

_PAGE = 4096
_CHUNK = 1 << 20  # bytes per pagemap read: 131072 entries


def vm_hwm_kib() -> int:
    """``VmHWM`` (peak resident set) of this process, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _open(args: argparse.Namespace):
    from drgn_p2p.target import open_program

    if args.qemu:
        return open_program(qemu=args.qemu, symbols=args.symbols)
    return open_program(symbols=args.symbols)


# -- audit ---------------------------------------------------------------------


def _measure_audit(prog, pids: Sequence[int], repeat: int) -> Dict[str, object]:
    from drgn_p2p import audit

    times: List[float] = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = audit(prog, pids=pids)
        times.append(time.perf_counter() - t)
    assert result is not None
    # The per-call fixed cost: layout, classifier and the task-list walk, with no
    # process selected (no tgid is -1).
    setup: List[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        audit(prog, pids=[-1])
        setup.append(time.perf_counter() - t)
    slots = sum((v.vma.end - v.vma.start) // _PAGE for v in result.vmas)
    present = sum(n for v in result.vmas for _, n in v.pages_by_kind)
    reads = audit_reads(prog, pids)
    floor: List[float] = []
    checked: List[float] = []
    for _ in range(repeat):
        floor.append(time_reads(prog, reads))
        checked.append(time_reads(prog, reads, check=True))
    from .bench_stages import sample_stages

    stages = sample_stages(lambda: audit(prog, pids=pids), min_cpu_s=2.0)
    return {
        "times_s": times,
        "slots": slots,
        "vmas": len(result.vmas),
        "present": present,
        "setup_s": setup,
        "floor_s": floor,
        "floor_checked_s": checked,
        "floor_reads": len(reads),
        "floor_bytes": sum(size for _, size in reads),
        "tables_read": result.stats.tables_read,
        "findings": len(result.findings),
        "stages": stages,
    }


def audit_reads(prog, pids: Sequence[int]) -> List[Tuple[int, int]]:
    """``(phys, size)`` of every page-table read of one ``audit(prog, pids=pids)``, in order.

    The audit's walkers are built by ``drgn_p2p.pipeline.PageTableWalker``;
    for this one call it is a subclass whose physical reader records each read.
    """
    from drgn_p2p import audit, pipeline

    reads: List[Tuple[int, int]] = []
    walker = pipeline.PageTableWalker

    class Recording(walker):  # type: ignore[misc, valid-type]
        def __init__(self, read, *args, **kwargs) -> None:
            def recorded(phys: int, size: int) -> bytes:
                reads.append((phys, size))
                return read(phys, size)

            super().__init__(recorded, *args, **kwargs)

    pipeline.PageTableWalker = Recording
    try:
        audit(prog, pids=pids)
    finally:
        pipeline.PageTableWalker = walker
    return reads


def time_reads(prog, reads: Sequence[Tuple[int, int]], check: bool = False) -> float:
    """Seconds to read *reads* (``(phys, size)``) of physical memory, nothing else.

    With *check*, each table read is also taken as one integer and tested
    with one mask (``int.from_bytes()``, ``&``, ``==``): the least a whole-table
    test in Python does (:mod:`drgn_p2p.scan` does a dozen such operations).
    """
    import drgn

    read = prog.read
    mask = _CHECK_MASK
    alike = 0  # tables whose entries hold nothing but the present bit: the test's result is used
    t = time.perf_counter()
    for phys, size in reads:
        try:
            data = read(phys, size, True)
        except drgn.FaultError:
            continue  # the audit met the same fault (a TableFault)
        if check:
            table = int.from_bytes(data, "little")
            alike += table & mask == table
    return time.perf_counter() - t


#: The present bit repeated in 512 lanes: what the checked floor masks each table with.
_CHECK_MASK = sum(1 << (64 * i) for i in range(512))


# -- follow_phys ---------------------------------------------------------------


def _drgn_vmas(prog, pids: Sequence[int]) -> List[Tuple[object, int, int]]:
    """``(mm, start, end)`` of every VMA of the selected processes (one per mm)."""
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import for_each_task

    seen = set()
    out: List[Tuple[object, int, int]] = []
    for task in for_each_task(prog):
        mm = task.mm.read_()
        if not mm or mm.value_() in seen:
            continue
        if pids and task.tgid.value_() not in pids:
            continue
        seen.add(mm.value_())
        for vma in for_each_vma(mm):
            out.append((mm, vma.vm_start.value_(), vma.vm_end.value_()))
    return out


def _sample(vmas: List[Tuple[object, int, int]], stride: int) -> Iterator[Tuple[object, int]]:
    """Every *stride*-th page of the concatenated VMAs."""
    skip = 0
    for mm, start, end in vmas:
        addr = start + skip * _PAGE
        while addr < end:
            yield mm, addr
            addr += stride * _PAGE
        skip = (addr - end) // _PAGE


def _measure_follow(prog, pids: Sequence[int], repeat: int, sample: int) -> Dict[str, object]:
    import drgn
    from drgn.helpers.linux.mm import follow_phys

    times: List[float] = []
    sampled = present = slots = nvmas = 0
    for _ in range(repeat):
        t = time.perf_counter()
        vmas = _drgn_vmas(prog, pids)
        enum_s = time.perf_counter() - t
        slots = sum((end - start) // _PAGE for _, start, end in vmas)
        nvmas = len(vmas)
        stride = max(1, -(-slots // sample)) if sample else 1
        sampled = present = 0
        t = time.perf_counter()
        for mm, addr in _sample(vmas, stride):
            sampled += 1
            try:
                follow_phys(mm, addr)
                present += 1
            except drgn.FaultError:
                pass
        per_page = (time.perf_counter() - t) / max(sampled, 1)
        times.append(enum_s + per_page * slots)
    return {
        "times_s": times,
        "slots": slots,
        "vmas": nvmas,
        "present": present * slots // max(sampled, 1) if sampled < slots else present,
        "sampled": sampled,
    }


# -- pagemap -------------------------------------------------------------------


def _maps(pid: int) -> List[Tuple[int, int]]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if line.rstrip().endswith("[vsyscall]"):
                continue
            lo, hi = line.split(None, 1)[0].split("-")
            out.append((int(lo, 16), int(hi, 16)))
    return out


def _pagemap_pass(pids: Sequence[int]) -> Tuple[int, int, int]:
    """Read the pagemap of every VMA of *pids* (all processes when empty).

    Returns ``(slots, vmas, present)``.
    """
    if not pids:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != os.getpid()]
    slots = nvmas = present = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    for pid in pids:
        try:
            vmas = _maps(pid)
            fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        try:
            for start, end in vmas:
                nvmas += 1
                pos, stop = start // _PAGE * 8, end // _PAGE * 8
                while pos < stop:
                    n = os.preadv(fd, [view[: min(_CHUNK, stop - pos)]], pos)
                    if n <= 0:
                        break
                    pos += n
                    slots += n // 8
                    # Bit 63 of each entry: page present. One C-level pass.
                    present += _count_present(view[:n])
        except OSError:
            pass
        finally:
            os.close(fd)
    return slots, nvmas, present


_HIGH_BYTES = bytes(range(0x80, 0x100))


def _count_present(data: memoryview) -> int:
    """Entries of a pagemap buffer with bit 63 (present) set, in two C-level passes."""
    top = bytes(data[7::8])  # the top byte of each little-endian entry
    return len(top) - len(top.translate(None, _HIGH_BYTES))


def _measure_pagemap(pids: Sequence[int], repeat: int) -> Dict[str, object]:
    times: List[float] = []
    slots = nvmas = present = 0
    for _ in range(repeat):
        t = time.perf_counter()
        slots, nvmas, present = _pagemap_pass(pids)
        times.append(time.perf_counter() - t)
    return {"times_s": times, "slots": slots, "vmas": nvmas, "present": present}


# -- main ------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one measurement and print its JSON record."""
    parser = argparse.ArgumentParser(prog="bench_measure", description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=("audit", "follow", "pagemap", "startup"))
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--qemu", metavar="QMP", help="QEMU guest over QMP (default: /proc/kcore)")
    where.add_argument("--kcore", action="store_true", help="the running kernel (the default)")
    parser.add_argument("-s", "--symbols", action="append", default=[], metavar="VMLINUX")
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--pid", type=int, action="append", dest="pids", default=[])
    scope.add_argument("--system", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample", type=int, default=0, help="follow: translate at most N pages")
    parser.add_argument("--profile", metavar="FILE", help="write a pyinstrument profile of all repeats (text if FILE ends in .txt, else HTML)")
    args = parser.parse_args(argv)

    record: Dict[str, object] = {
        "method": args.method,
        "target": "qemu" if args.qemu else ("kcore" if args.method != "pagemap" else "pagemap"),
        "scope": "system" if args.system else ",".join(map(str, args.pids)),
    }
    prog = None
    pids: List[int] = args.pids
    if args.method in ("audit", "follow", "startup"):
        t = time.perf_counter()
        import drgn  # noqa: F401  (import time is part of start-up)

        prog = _open(args)
        import drgn_p2p.pipeline  # noqa: F401  (so is importing the engine)

        record["startup_s"] = time.perf_counter() - t
        if args.system and not args.qemu:
            # Live: the whole system but this measuring process (pagemap skips itself too).
            from drgn_p2p.tasks import for_each_process

            pids = [p.pid for p in for_each_process(prog) if p.pid != os.getpid()]
    record["hwm_startup_kib"] = vm_hwm_kib()

    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    if args.method == "audit":
        record.update(_measure_audit(prog, pids, args.repeat))
    elif args.method == "follow":
        record.update(_measure_follow(prog, pids, args.repeat, args.sample))
    elif args.method == "pagemap":
        record.update(_measure_pagemap(args.pids, args.repeat))
    else:
        record.update({"times_s": [], "slots": 0, "vmas": 0})
    if profiler is not None:
        profiler.stop()
        with open(args.profile, "w") as f:
            if args.profile.endswith(".txt"):
                f.write(profiler.output_text(unicode=True, show_all=False))
            else:
                f.write(profiler.output_html())
        record["profile"] = args.profile

    record["hwm_kib"] = vm_hwm_kib()
    record["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write("\n" + json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
