# SPDX-License-Identifier: GPL-2.0-or-later
"""
Benchmark
---------

``scripts/bench`` (also ``drgn-p2p lab bench``): boot one lab guest, hold a
synthetic load in it, and time, in that one boot, three ways of examining the
same VMAs:

* drgn-p2p's ``audit()`` — from the host over QMP and live through
  ``/proc/kcore`` inside the guest;
* the naive drgn way, ``follow_phys()`` per 4 KiB page — inside the guest and
  over QMP (sampled and extrapolated: see :mod:`drgn_p2p.lab.bench_measure`);
* the kernel's own walk, bulk reads of ``/proc/PID/pagemap`` inside the guest;
* the floor: in each audit's process, ``prog.read()`` of exactly the page
  tables that audit read and nothing else; audit ÷ floor (time over time)
  is what everything but the reads costs; the same reads with one integer
  test of each table (the least Python a whole-table test adds) over the floor;
* where each audit's time goes, stage by stage (:mod:`.bench_stages`);

plus crash's ``vm -p`` when the distribution's crash can read the kernel.

The load (``guest/benchload.c``): anonymous memory of each size with 4 KiB
pages (``MADV_NOHUGEPAGE``) and with THPs (``MADV_HUGEPAGE``), a sparse
mapping with one page written per 2 MiB, 200 small processes, and the
``fsdax``, ``devdax`` and ``pcibar`` scenarios; each load is one scope (the
small processes together), and so is the whole system. Every measurement runs in a
fresh process (its peak RSS is its own) and repeats the timed part
``--repeat`` times; the tables give medians. drgn's start-up (debug info
load) is kept out of the timings and reported on its own.

Results go to ``--out`` (default
``${XDG_CACHE_HOME:-~/.cache}/drgn-p2p/bench/<timestamp>/``): ``results.json``
(every record), ``results.md`` (the tables) and ``bench.png`` (time and peak
RSS against mapped size; needs the ``bench`` extra for matplotlib).

``--scale`` runs :mod:`drgn_p2p.lab.bench_scale` instead: time and peak RSS
against the number of processes and the mapped size, with power-law fits.
"""

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import LabError, cache_dir

__all__ = ("Load", "Measurement", "bench_command", "default_loads", "main")

_console = Console(stderr=True, highlight=False)

#: The package's parent directory: put on PYTHONPATH of every measuring process.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]

#: Scenarios held next to the synthetic load.
DEVICE_SCENARIOS = ("fsdax", "devdax", "pcibar")

#: (method, target) pairs in the order they are measured, with where they run.
METHODS: Tuple[Tuple[str, str, str], ...] = (
    ("pagemap", "pagemap", "guest"),
    ("audit", "kcore", "guest"),
    ("follow", "kcore", "guest"),
    ("audit", "qemu", "host"),
    ("follow", "qemu", "host"),
)

_LABELS = {
    ("pagemap", "pagemap"): "pagemap (guest)",
    ("audit", "kcore"): "drgn-p2p audit, live /proc/kcore (guest)",
    ("audit", "qemu"): "drgn-p2p audit, --qemu (host)",
    ("follow", "kcore"): "follow_phys per page, live (guest)",
    ("follow", "qemu"): "follow_phys per page, --qemu (host)",
    ("crash", "kcore"): "crash vm -p, live (guest)",
}


@dataclass(frozen=True)
class Load:
    """One process (or swarm) of the synthetic load."""

    name: str  # also the benchload NAME column
    mode: str  # benchload MODE: 4k, thp, sparse, small
    size: int  # MiB (a process count for "small")

    @property
    def mapped_mib(self) -> int:
        return 0 if self.mode == "small" else self.size


def default_loads(sizes: Sequence[int] = (64, 256, 1024), small: int = 200) -> List[Load]:
    """4K-only and THP anonymous memory of each size, a sparse mapping, small processes."""
    loads = [Load(f"{mode}-{size}M", mode, size) for mode in ("4k", "thp") for size in sizes]
    loads.append(Load(f"sparse-{max(sizes)}M", "sparse", max(sizes)))
    if small:
        loads.append(Load(f"small-x{small}", "small", small))
    return loads


@dataclass
class Measurement:
    """One measuring process's record plus where it ran and what it measured."""

    scope: str  # load name or "system"
    mapped_mib: int
    method: str
    target: str
    record: Dict[str, Any]

    @property
    def median_s(self) -> Optional[float]:
        times = self.record.get("times_s") or []
        return statistics.median(times) if times else None

    @property
    def rate(self) -> Optional[float]:
        """Leaf slots examined per second (median time)."""
        t = self.median_s
        return self.record["slots"] / t if t else None

    def _median(self, key: str) -> Optional[float]:
        values = self.record.get(key)
        return statistics.median(values) if values else None

    @property
    def setup_s(self) -> Optional[float]:
        """audit: median time of the same call selecting no process (its fixed cost)."""
        return self._median("setup_s")

    @property
    def floor_s(self) -> Optional[float]:
        """audit: median time of reading only the page tables it reads (the floor)."""
        return self._median("floor_s")

    @property
    def checked_floor_s(self) -> Optional[float]:
        """audit: median time of the same reads plus one integer test per table."""
        return self._median("floor_checked_s")

    @property
    def checked_over_floor(self) -> Optional[float]:
        """audit: the checked floor over the floor (what the least Python per table costs)."""
        checked, floor = self.checked_floor_s, self.floor_s
        return checked / floor if checked and floor else None

    @property
    def over_floor(self) -> Optional[float]:
        """audit: median time over the floor's median time (1.0: nothing but the reads)."""
        t, floor = self.median_s, self.floor_s
        return t / floor if t and floor else None

    @property
    def walk_rate(self) -> Optional[float]:
        """audit: slots per second of the time above the fixed cost (the marginal rate)."""
        t, setup = self.median_s, self.setup_s
        if t is None or setup is None or t <= setup:
            return None
        return self.record["slots"] / (t - setup)

    def as_dict(self) -> Dict[str, Any]:
        return {
            **self.record,
            "measured": self.record.get("scope"),  # the pids, or "system"
            "scope": self.scope,
            "mapped_mib": self.mapped_mib,
            "method": self.method,
            "target": self.target,
            "median_s": self.median_s,
            "entries_per_s": self.rate,
            "audit_setup_median_s": self.setup_s,
            "entries_per_s_above_setup": self.walk_rate,
            "floor_median_s": self.floor_s,
            "audit_over_floor": self.over_floor,
            "floor_checked_median_s": self.checked_floor_s,
            "floor_checked_over_floor": self.checked_over_floor,
        }


def scope_args(load: Load, pids: Sequence[int]) -> List[str]:
    """The measuring process's scope for *load* held as *pids*: its process, or every small one."""
    chosen = pids if load.mode == "small" else pids[:1]
    return [arg for pid in chosen for arg in ("--pid", str(pid))]


def _measure_argv(method: str, target: str, scope: Sequence[str], vmlinux: str, qmp: str,
                  repeat: int, sample: int, profile: Optional[str] = None) -> List[str]:
    argv = [sys.executable, "-m", "drgn_p2p.lab.bench_measure", method, *scope, "--repeat", str(repeat)]
    if method in ("audit", "follow"):
        argv += ["-s", vmlinux] + (["--qemu", qmp] if target == "qemu" else ["--kcore"])
    if method == "follow" and sample:
        argv += ["--sample", str(sample)]
    if profile:
        argv += ["--profile", profile]
    return argv


def _last_json(output: str, what: str) -> Dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise LabError(f"{what} printed no record; output tail:\n{output[-2000:]}")


class Bench:
    """One benchmark run: a booted guest, its load, and the measurements so far."""

    def __init__(self, guest: Any, out: Path, repeat: int, sample: int, timeout: float) -> None:
        self.guest = guest
        self.out = out
        self.repeat = repeat
        self.sample = sample
        self.timeout = timeout
        self.vmlinux = str(guest.kernel.vmlinux)
        self.held: Dict[str, List[int]] = {}  # load name -> pids
        self.results: List[Measurement] = []
        self.notes: Dict[str, Any] = {}

    # -- the load ----------------------------------------------------------------

    def hold(self, loads: Sequence[Load], wait: float = 300) -> None:
        """Start every load in the guest, one after the other, and record its pids.

        :param wait: seconds (float) each load may take to populate its memory.
        """
        from .scenarios import guest_binary

        binary = shlex.quote(str(guest_binary("benchload")))
        lines = [
            "f=/sys/kernel/mm/transparent_hugepage/enabled",
            'grep -q "\\[never\\]" $f && echo madvise > $f',
            "mkdir -p /tmp/bench",
        ]
        for load in loads:
            rec = f"/tmp/bench/{load.name}.txt"
            lines += [
                f"setsid {binary} {rec} {load.name} {load.mode} {load.size} "
                f"< /dev/null > /tmp/bench/{load.name}.log 2>&1 &",
                f"for i in $(seq {int(wait * 4)}); do [ -e {rec} ] && break; sleep 0.25; done",
                f"[ -e {rec} ] || {{ cat /tmp/bench/{load.name}.log; exit 1; }}",
            ]
        lines.append("cat /tmp/bench/*.txt; echo ---; grep -H AnonHugePages /proc/[0-9]*/smaps_rollup 2> /dev/null | grep -v ' 0 kB'; true")
        rc, output = self.guest.run("\n".join(lines), timeout=max(1800, wait * len(loads) + 60))
        if rc != 0:
            raise LabError(f"holding the load failed (status {rc}):\n{output[-2000:]}")
        records, _, thp = output.partition("---")
        for line in records.split("\n"):
            parts = line.split()
            if len(parts) == 4:
                self.held.setdefault(parts[0], []).append(int(parts[1]))
        self.notes["anon_huge_pages"] = thp.strip().splitlines()
        missing = [load.name for load in loads if load.name not in self.held]
        if missing:
            raise LabError(f"loads not held: {missing}; output:\n{output[-2000:]}")

    def release(self, load: Load) -> None:
        """Kill the processes of *load* held by :meth:`hold`, wait until they are gone, forget them."""
        pids = " ".join(map(str, self.held.pop(load.name, [])))
        rc, output = self.guest.run(
            f"rm -f /tmp/bench/{load.name}.txt; kill -9 {pids} 2> /dev/null; "
            # Gone, or a zombie (its memory freed; init may reap it later).
            f"for i in $(seq 1200); do alive=; for p in {pids}; do "
            f"grep -qs '^State:[[:space:]]*[^Z]' /proc/$p/status && alive=1; done; "
            f"[ -z \"$alive\" ] && exit 0; sleep 0.25; done; exit 1",
            timeout=360)
        if rc != 0:
            raise LabError(f"{load.name} (pids {pids}) did not exit: {output[-500:]}")

    # -- measuring ---------------------------------------------------------------

    def measure(self, scope: str, mapped_mib: int, method: str, target: str, where: str,
                scope_args: Sequence[str], profile: Optional[str] = None) -> Optional[Measurement]:
        """Run one measuring process; record and return its measurement (None on failure)."""
        guest_profile = None
        if profile and where == "guest":
            # The guest writes to the out share (/out); copied to the results afterwards.
            guest_profile = Path(profile).name
            profile = f"/out/{guest_profile}"
        argv = _measure_argv(method, target, scope_args, self.vmlinux, self.guest.qmp_path,
                             self.repeat, self.sample, profile)
        what = f"{method}/{target} on {scope}"
        _console.print(f"bench: {what} …", end="")
        started = time.monotonic()
        try:
            if where == "guest":
                cmd = f"cd {shlex.quote(str(_SOURCE_ROOT))} && PYTHONPATH=. {shlex.join(argv)} 2>&1"
                rc, output = self.guest.run(cmd, timeout=self.timeout)
            else:
                env = dict(os.environ, PYTHONPATH=str(_SOURCE_ROOT))
                proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      env=env, timeout=self.timeout, cwd=str(_SOURCE_ROOT))
                rc, output = proc.returncode, proc.stdout.decode(errors="replace")
            if rc != 0:
                raise LabError(f"status {rc}: {output[-1500:]}")
            record = _last_json(output, what)
        except (LabError, subprocess.TimeoutExpired, ValueError) as e:
            _console.print(f" [red]failed[/] ({escape(str(e))})")
            self.notes.setdefault("failures", []).append(f"{what}: {e}")
            return None
        if guest_profile:
            import shutil

            shutil.copy(self.guest.out_dir / guest_profile, self.out / guest_profile)
            record["profile"] = str(self.out / guest_profile)
        m = Measurement(scope, mapped_mib, method, target, record)
        self.results.append(m)
        wall = time.monotonic() - started
        rate = m.rate
        _console.print(
            f" {m.median_s:.4g} s, {rate / 1e6 if rate else 0:.3g} M entries/s"
            f" (startup {record.get('startup_s', 0):.3g} s, process {wall:.3g} s)"
        )
        return m

    def measure_scope(self, scope: str, mapped_mib: int, scope_args: Sequence[str],
                      methods: Sequence[Tuple[str, str, str]] = METHODS) -> None:
        for method, target, where in methods:
            self.measure(scope, mapped_mib, method, target, where, scope_args)

    # -- crash -------------------------------------------------------------------

    def crash(self, loads: Sequence[Load], max_seconds: float = 600) -> None:
        """crash's ``vm -p`` on the 4K loads, live in the guest, if crash can read the kernel."""
        import shutil

        binary = shutil.which("crash")
        if binary is None:
            self.notes["crash"] = "crash is not installed on the host (apt-get install crash)"
            return
        version = next((line for line in subprocess.run([binary, "--version"], capture_output=True,
                                                         text=True).stdout.splitlines() if line.strip()), "crash")
        base = f"{shlex.quote(binary)} -s {shlex.quote(self.vmlinux)} /proc/kcore"
        # Start-up alone, then vm -p on each 4K load.
        started = time.monotonic()
        rc, output = self.guest.run(
            f"s=$(date +%s.%N); printf 'sys\\nq\\n' | {base.replace(' -s ', ' -d 1 ')} 2>&1; echo status=$?; "
            f"echo elapsed=$(echo \"$(date +%s.%N) - $s\" | bc)", timeout=max_seconds)
        self.notes["crash_version"] = version
        self.notes["crash_startup_output"] = output[-3000:]
        ok = rc == 0 and "status=0" in output and "RELEASE" in output
        if not ok:
            errors = [line for line in output.splitlines() if line.startswith("crash:")]
            self.notes["crash"] = (f"{version} could not start on this kernel live (/proc/kcore), so vm -p was "
                                   f"not run: {errors[-1] if errors else output.strip()[-300:]}")
            return
        for load in loads:
            if load.mode != "4k" or time.monotonic() - started > max_seconds:
                continue
            pid = self.held[load.name][0]
            rc, output = self.guest.run(
                f"s=$(date +%s.%N); printf 'vm -p {pid}\\nq\\n' | {base} > /tmp/bench/crash.out 2>&1; "
                f"echo status=$?; echo elapsed=$(echo \"$(date +%s.%N) - $s\" | bc); "
                f"wc -l < /tmp/bench/crash.out; tail -n 3 /tmp/bench/crash.out", timeout=max_seconds)
            self.notes.setdefault("crash_runs", []).append({"load": load.name, "output": output[-1500:]})


# -- summaries -------------------------------------------------------------------


def _find(results: Sequence[Measurement], scope: str, method: str, target: str) -> Optional[Measurement]:
    for m in results:
        if (m.scope, m.method, m.target) == (scope, method, target):
            return m
    return None


def _ratio(a: Optional[Measurement], b: Optional[Measurement]) -> Optional[float]:
    """Throughput of *a* over throughput of *b*."""
    if a is None or b is None or not a.rate or not b.rate:
        return None
    return a.rate / b.rate


def ratios(results: Sequence[Measurement]) -> List[Dict[str, Any]]:
    """Per scope: drgn-p2p's time over its floor's (bare page-table reads), and its
    throughput over pagemap's and follow_phys's."""
    rows = []
    for scope in dict.fromkeys(m.scope for m in results):
        live = _find(results, scope, "audit", "kcore")
        qemu = _find(results, scope, "audit", "qemu")
        pagemap = _find(results, scope, "pagemap", "pagemap")
        rows.append({
            "scope": scope,
            "audit_live_over_floor": live.over_floor if live else None,
            "audit_qemu_over_floor": qemu.over_floor if qemu else None,
            "floor_checked_live_over_floor": live.checked_over_floor if live else None,
            "audit_live_over_pagemap": _ratio(live, pagemap),
            "audit_live_above_setup_over_pagemap": (
                live.walk_rate / pagemap.rate if live and pagemap and live.walk_rate and pagemap.rate else None
            ),
            "audit_live_over_follow_live": _ratio(live, _find(results, scope, "follow", "kcore")),
            "audit_qemu_over_follow_qemu": _ratio(qemu, _find(results, scope, "follow", "qemu")),
        })
    return rows


def startup(results: Sequence[Measurement]) -> Dict[str, Dict[str, float]]:
    """drgn start-up (open + debug info) per target: median, min, max over all processes."""
    out: Dict[str, Dict[str, float]] = {}
    for target in ("kcore", "qemu"):
        values = [m.record["startup_s"] for m in results if m.target == target and "startup_s" in m.record]
        if values:
            out[target] = {"median_s": statistics.median(values), "min_s": min(values),
                           "max_s": max(values), "n": len(values)}
    return out


def stage_rows(results: Sequence[Measurement]) -> List[List[str]]:
    """Per audit measurement: the share of its samples in each stage (:mod:`.bench_stages`)."""
    from .bench_stages import OTHER, STAGES

    rows = []
    for m in results:
        stages = m.record.get("stages") if m.method == "audit" else None
        if not stages or not stages.get("shares"):
            continue
        shares = stages["shares"]
        rows.append([m.scope, _LABELS.get((m.method, m.target), m.target), str(stages["samples"])]
                    + [f"{100 * shares.get(s, 0):.0f}%" for s in (*STAGES, OTHER)])
    return rows


def stage_headers() -> List[str]:
    from .bench_stages import OTHER, STAGES

    return ["scope", "audit", "samples", *STAGES, OTHER]


def _fmt(x: Optional[float], spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec)


def _rows(results: Sequence[Measurement]) -> List[List[str]]:
    rows = []
    for m in results:
        r = m.record
        note = ""
        if r.get("sampled") and r["sampled"] < r["slots"]:
            note = f"sampled {r['sampled']} pages, extrapolated"
        rows.append([
            m.scope, str(m.mapped_mib), _LABELS.get((m.method, m.target), f"{m.method}/{m.target}"),
            str(r["slots"]), str(r.get("present", "")), _fmt(m.median_s, ".4g"),
            _fmt(m.rate / 1e6 if m.rate else None),
            _fmt(m.setup_s, ".3g") if m.setup_s is not None else "",
            _fmt(m.floor_s, ".3g") if m.floor_s is not None else "",
            _fmt(m.walk_rate / 1e6 if m.walk_rate else None) if m.setup_s is not None else "",
            _fmt(r["hwm_kib"] / 1024, ".0f"),
            _fmt((r["hwm_kib"] - r["hwm_startup_kib"]) / 1024, ".0f"), note,
        ])
    return rows


_HEADERS = ["scope", "mapped MiB", "method", "leaf slots", "present", "median s",
            "M entries/s", "audit setup s", "floor s", "M entries/s above setup", "peak RSS MiB", "RSS growth MiB", "note"]
_RATIO_KEYS = ("audit_live_over_floor", "audit_qemu_over_floor", "floor_checked_live_over_floor",
               "audit_live_over_pagemap", "audit_live_above_setup_over_pagemap",
               "audit_live_over_follow_live", "audit_qemu_over_follow_qemu")
_RATIO_HEADERS = ["scope", "audit time ÷ floor (live)", "audit time ÷ floor (qemu)",
                  "one integer test per table ÷ floor (live)", "audit:pagemap (live)", "audit:pagemap above setup (live)",
                  "audit:follow_phys (live)", "audit:follow_phys (qemu)"]


def _ratio_rows(rows: Sequence[Dict[str, Any]]) -> List[List[str]]:
    return [[r["scope"]] + [_fmt(r[k], ".3g") + ("×" if r[k] is not None else "") for k in _RATIO_KEYS]
            for r in rows]


def markdown(doc: Dict[str, Any], results: Sequence[Measurement]) -> str:
    """The result tables as Markdown."""
    def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)

    meta = doc["meta"]
    parts = [
        f"# drgn-p2p benchmark, {meta['started']}",
        "",
        f"Kernel {meta['kernel']}, guest {meta['memory']} / {meta['smp']} vCPUs under {meta['accel']}, "
        f"host {meta['host']}. Medians of {meta['repeat']} repeats, each measurement in a fresh process; "
        "entries/s = leaf slots examined (4 KiB pages covered by the VMAs walked) / median time. "
        "Ratios are throughput ratios within this one run. \"audit setup\" is the same audit() call "
        "selecting no process (layout, classifier, task-list walk): its fixed cost per call; "
        "\"floor\" is the bare cost of the audit's own reads (prog.read of exactly the page tables "
        "the audit reads, in the same process and guest), and \"audit time ÷ floor\" the audit's "
        "median time over the floor's (1.0×: nothing but the reads); \"one integer test per table\" "
        "is the floor with each table read also taken as one integer and tested with one mask "
        "(int.from_bytes, &, ==), the least Python a whole-table test adds; "
        "\"above setup\" rates divide the slots by the time above it. \"mapped MiB\" of the system "
        "scope is the sum of the loads' sizes (the sparse mapping is mostly unpopulated).",
        "",
        "## Ratios",
        "",
        table(_RATIO_HEADERS, _ratio_rows(doc["ratios"])),
        "",
        "## Measurements",
        "",
        table(_HEADERS, _rows(results)),
        "",
        "## Where the audit's time goes",
        "",
        "Share of CPU-time samples (one per millisecond, ITIMER_PROF) of more audits of each scope, "
        "by the innermost pipeline stage on the Python stack (drgn_p2p.lab.bench_stages): \"table "
        "reads\" is the floor's work plus the Python around each read, everything else is Python "
        "per process, per VMA, per table or per run.",
        "",
        table(stage_headers(), stage_rows(results)),
        "",
        "## drgn start-up (open + debug info load), excluded above",
        "",
        table(["target", "median s", "min s", "max s", "processes"],
              [[t, _fmt(v["median_s"]), _fmt(v["min_s"]), _fmt(v["max_s"]), str(v["n"])]
               for t, v in doc["startup"].items()]),
        "",
        "## crash",
        "",
        str(doc["notes"].get("crash", "see results.json (notes.crash_runs)")),
        "",
    ]
    if doc["notes"].get("failures"):
        parts += ["## Failures", ""] + [f"* {f}" for f in doc["notes"]["failures"]] + [""]
    return "\n".join(parts)


def _table_console(console: Console) -> Console:
    """*console*, or when it is not a terminal (a log, a pipe) one as wide as the tables need.

    rich lays a non-terminal out in 80 columns, which cuts every cell of the
    measurements table to a few characters; a log has no width to respect.
    """
    if console.is_terminal:
        return console
    return Console(file=console.file, highlight=False, width=_LOG_WIDTH, force_terminal=False)


#: Columns of the tables written to a non-terminal: wider than any row.
_LOG_WIDTH = 400


def print_tables(doc: Dict[str, Any], results: Sequence[Measurement], markdown_path: Optional[Path] = None,
                 console: Optional[Console] = None) -> None:
    """The result tables with rich, on stderr (at full width when stderr is not a terminal)."""
    console = _table_console(console or _console)
    t = Table(title="drgn-p2p ÷ floor (time), drgn-p2p:pagemap and drgn-p2p:follow_phys (throughput ratios)")
    for h in _RATIO_HEADERS:
        t.add_column(h, justify="right" if h != "scope" else "left")
    for row in _ratio_rows(doc["ratios"]):
        t.add_row(*row)
    console.print(t)
    t = Table(title="Where the audit's time goes (share of samples per stage)")
    for h in stage_headers():
        t.add_column(h, justify="left" if h in ("scope", "audit") else "right")
    for row in stage_rows(results):
        t.add_row(*row)
    console.print(t)
    t = Table(title="Measurements (medians)")
    for h in _HEADERS:
        t.add_column(h, justify="left" if h in ("scope", "method", "note") else "right")
    for row in _rows(results):
        t.add_row(*row)
    console.print(t)
    for target, v in doc["startup"].items():
        console.print(f"drgn start-up via {target}: median {v['median_s']:.3g} s "
                       f"(min {v['min_s']:.3g}, max {v['max_s']:.3g}, {v['n']} processes)")
    if markdown_path is not None:
        console.print(f"the same tables in Markdown: {escape(str(markdown_path))}")


def plot(results: Sequence[Measurement], path: Path) -> Optional[str]:
    """Time and RSS growth against mapped size, per method; None when written, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'drgn-p2p[bench]')"
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    series = [(k, v) for k, v in _LABELS.items() if k[0] != "crash"]
    for ax, mode, title in ((axes[0], "4k", "4 KiB pages (MADV_NOHUGEPAGE)"),
                            (axes[1], "thp", "THP (MADV_HUGEPAGE)")):
        for (method, target), label in series:
            pts = sorted((m.mapped_mib, m.median_s) for m in results
                         if m.scope.startswith(mode + "-") and (m.method, m.target) == (method, target)
                         and m.median_s)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("mapped MiB (one process)")
        ax.set_ylabel("median seconds")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    ax = axes[2]
    for (method, target), label in series:
        pts = sorted((m.mapped_mib, m.record["hwm_kib"] / 1024) for m in results
                     if m.scope.startswith(("4k-", "thp-")) and (m.method, m.target) == (method, target))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle="", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("mapped MiB (4K and THP loads)")
    ax.set_ylabel("peak RSS of the measuring process, MiB (VmHWM)")
    ax.set_title("Peak RSS against mapped size")
    ax.grid(True, alpha=0.3)
    fig.suptitle("drgn-p2p audit vs follow_phys vs /proc/PID/pagemap (log-log: slope 1 = linear)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def results_message(out: Path, why_not: Optional[str]) -> str:
    """The last line of a run, as rich markup (*out* and *why_not* escaped: ``[bench]`` is not a tag)."""
    return f"bench: results in {escape(str(out))}" + (f" (no plot: {escape(why_not)})" if why_not else "")


def _default_out() -> Path:
    return cache_dir() / "bench" / time.strftime("%Y%m%d-%H%M%S")


def main(kernel_name: str = "newest", memory: str = "6G", out: Optional[Path] = None,
         repeat: int = 3, sample: int = 4096, sizes: Sequence[int] = (64, 256, 1024),
         small: int = 200, system: bool = True, crash: bool = True, timeout: float = 1800,
         profile: bool = False) -> Path:
    """Run the benchmark; return the results directory."""
    from .kernels import ensure_kernel
    from .vm import accel_args, start

    out = Path(out) if out else _default_out()
    out.mkdir(parents=True, exist_ok=True)
    kernel = ensure_kernel(kernel_name)
    loads = default_loads(sizes, small)
    accel = "kvm" if "kvm" in accel_args() else "tcg"
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "kernel": kernel.kver, "memory": memory,
        "smp": 2, "accel": accel, "repeat": repeat, "sample": sample,
        "host": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "loads": [load.__dict__ for load in loads], "scenarios": list(DEVICE_SCENARIOS),
    }
    _console.print(f"bench: booting {kernel.kver} ({accel}, {memory}) with {', '.join(DEVICE_SCENARIOS)} …")
    guest = start(kernel, list(DEVICE_SCENARIOS), memory=memory, timeout=900)
    bench = Bench(guest, out, repeat, sample, timeout)
    try:
        meta["held_scenarios"] = [m["kind"] for m in guest.mappings]
        meta["skipped_scenarios"] = guest.skipped
        _console.print(f"bench: holding {len(loads)} loads …")
        bench.hold(loads)
        for load in loads:
            bench.measure_scope(load.name, load.mapped_mib, scope_args(load, bench.held[load.name]))
        if system:
            bench.measure_scope("system", sum(load.mapped_mib for load in loads), ["--system"])
        if profile:
            biggest = max((load for load in loads if load.mode == "4k"), key=lambda load: load.size)
            for target, where in (("kcore", "guest"), ("qemu", "host")):
                path = out / f"profile-audit-{target}-{biggest.name}.txt"
                bench.measure(f"{biggest.name} (profiled)", biggest.mapped_mib, "audit", target, where,
                              ["--pid", str(bench.held[biggest.name][0])], profile=str(path))
        if crash:
            bench.crash(loads)
    finally:
        guest.close()
    profiled = [m for m in bench.results if m.scope.endswith("(profiled)")]
    results = [m for m in bench.results if m not in profiled]
    doc = {
        "schema": "drgn-p2p/bench/1",
        "meta": meta,
        "ratios": ratios(results),
        "startup": startup(results),
        "results": [m.as_dict() for m in results],
        "profiled": [m.as_dict() for m in profiled],
        "notes": bench.notes,
    }
    why_not = plot(results, out / "bench.png")
    doc["plot"] = str(out / "bench.png") if why_not is None else why_not
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "results.md").write_text(markdown(doc, results))
    print_tables(doc, results, out / "results.md")
    _console.print(results_message(out, why_not))
    return out


@click.command("bench")
@click.option("--kernel", "kernel_name", default="newest", show_default=True, help="Lab kernel: newest, 6.12 or 6.1.")
@click.option("--memory", default="6G", show_default=True, help="Guest memory (the load needs about 2.7 GiB).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Results directory [default: ${XDG_CACHE_HOME:-~/.cache}/drgn-p2p/bench/<timestamp>].")
@click.option("--repeat", default=3, show_default=True, help="Timed repeats per measuring process (medians).")
@click.option("--sample", default=4096, show_default=True,
              help="follow_phys: translate at most this many pages per scope and extrapolate (0: all).")
@click.option("--sizes", default="64,256,1024", show_default=True, help="Anonymous mapping sizes in MiB.")
@click.option("--small", default=200, show_default=True, help="Number of small processes.")
@click.option("--no-system", is_flag=True, help="Skip the whole-system measurements.")
@click.option("--no-crash", is_flag=True, help="Skip crash.")
@click.option("--profile", is_flag=True, help="Also profile one audit per target with pyinstrument (bench extra).")
@click.option("--timeout", default=1800.0, show_default=True, help="Seconds per measuring process.")
@click.option("--scale", is_flag=True,
              help="Instead: time and peak RSS of the audit against processes and mapped size, "
                   "power-law fits and extrapolation (drgn_p2p.lab.bench_scale).")
@click.option("--procs", default="250,500,1000,2000", show_default=True,
              help="--scale: process counts (one swarm of the largest, the audit scoped to the first N; '' skips).")
@click.option("--mapped", default="1024,2048,4096,8192", show_default=True,
              help="--scale: mapped sizes in MiB, one process at a time ('' skips).")
@click.option("--thp", is_flag=True, help="--scale: the mapped series with THPs too.")
@click.option("--live", is_flag=True, help="--scale: also audit live inside the guest (slow under TCG).")
@click.option("--memory-wait", default=1800.0, show_default=True,
              help="--scale: seconds to wait for the host memory of the largest size before dropping it.")
def bench_command(kernel_name: str, memory: str, out: Optional[Path], repeat: int, sample: int, sizes: str,
                  small: int, no_system: bool, no_crash: bool, profile: bool, timeout: float, scale: bool,
                  procs: str, mapped: str, thp: bool, live: bool, memory_wait: float) -> None:
    """Benchmark audit against /proc/PID/pagemap and per-page follow_phys in one lab guest."""
    size_list, procs_list, mapped_list = (_int_list(v, name) for v, name in (
        (sizes, "--sizes"), (procs, "--procs"), (mapped, "--mapped")))
    try:
        if scale:
            from . import bench_scale

            bench_scale.main(kernel_name, out, repeat, procs_list, mapped_list, thp, live, timeout, memory_wait)
            return
        main(kernel_name, memory, out, repeat, sample, size_list, small, not no_system, not no_crash,
             timeout, profile)
    except LabError as e:
        _console.print(f"[bold red]error:[/] {escape(str(e))}")
        sys.exit(2)


def _int_list(value: str, option: str) -> List[int]:
    """The comma-separated positive integers of *value* (str) given to *option* (str)."""
    try:
        out = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        out = [0]
    if any(n <= 0 for n in out):
        raise click.UsageError(f"{option} must be a comma-separated list of positive integers, not {value!r}")
    return out
