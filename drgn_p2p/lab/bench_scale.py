# SPDX-License-Identifier: GPL-2.0-or-later
"""
Benchmark: scale
----------------

``scripts/bench --scale`` (also ``drgn-p2p lab bench --scale``): how the
audit's time and the measuring process's peak RSS grow with the number of
processes and with the mapped size, and what that predicts for 10,000
processes and 1 TiB mapped. It reuses the benchmark's machinery
(:class:`drgn_p2p.lab.bench.Bench`, :class:`~drgn_p2p.lab.bench.Load`,
:mod:`drgn_p2p.lab.bench_measure`: every point is one fresh measuring
process, ``--repeat`` timed repeats, medians).

Two series, one boot each (no device scenarios):

``processes``
    one ``benchload small`` swarm of ``max(--procs)`` small processes (64 KiB
    of anonymous memory each) held all at once; the point for N audits the
    first N of them (``--pid`` × N).
``mapped``
    one process at a time holding ``--mapped`` MiB of anonymous memory with
    4 KiB pages (``MADV_NOHUGEPAGE``, every page written; with ``--thp`` also
    THPs), released before the next size. The guest gets the largest size
    plus 1.5 GiB; before booting it, the run waits (at most
    ``--memory-wait`` seconds) until the host has that much available plus
    2.5 GiB, and otherwise drops the sizes that do not fit.

Each point is audited over QMP from the host, and with ``--live`` also
through ``/proc/kcore`` inside the guest. Per series and quantity the run fits
a power law by least squares on the logarithms, ``y = a·x^b`` (x: processes,
or mapped MiB; y: median seconds, or the peak RSS's growth above the
process's RSS after drgn's start-up, in MiB) and evaluates it at 10,000
processes and 1 TiB (1,048,576 MiB); peak RSS is predicted as the median
start-up RSS plus that growth. ``b`` is the exponent: 1 is linear.

Results go to ``--out``: ``scale.json`` (every point, with the
same per-measurement figures as ``results.json``, and the fits),
``scale.md`` (the tables) and ``scale.png`` (log-log, with the fitted lines
drawn out to the extrapolation targets).
"""

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rich.markup import escape

from . import LabError
from .bench import Bench, Load, Measurement, _console, _default_out, _fmt, _table_console, scope_args

__all__ = ("PowerLaw", "fit_power_law", "fits", "main", "markdown", "points", "wait_for_memory")

#: Where each series is extrapolated to: 10,000 processes, 1 TiB in MiB.
TARGETS = {"processes": 10_000, "mapped": 1 << 20}

#: The unit of x per series.
X_UNITS = {"processes": "processes", "mapped": "MiB"}

#: (method, target, where) of the audit per place it runs.
AUDIT_QMP = ("audit", "qemu", "host")
AUDIT_LIVE = ("audit", "kcore", "guest")

#: MiB the mapped series' guest needs beyond its largest mapping, and MiB
#: the host keeps available beyond the guest.
GUEST_OVERHEAD_MIB = 1536
HOST_RESERVE_MIB = 2560


@dataclass(frozen=True)
class PowerLaw:
    """``y = a·x^b``, fitted by least squares on ``(ln x, ln y)`` over *n* points."""

    a: float
    b: float
    r2: float  # of the fit in log space (1.0: the points lie on the line)
    n: int

    def at(self, x: float) -> float:
        """The model's y at *x* (float)."""
        return self.a * x ** self.b

    @property
    def model(self) -> str:
        return f"y = {self.a:.4g}·x^{self.b:.3f}"


def fit_power_law(xy: Sequence[Tuple[float, float]]) -> Optional[PowerLaw]:
    """The least-squares power law through *xy* (``(x, y)`` pairs) on log-log axes.

    Points with x or y not positive are left out (a logarithm needs them);
    None when fewer than two distinct x remain.
    """
    pts = [(math.log(x), math.log(y)) for x, y in xy if x > 0 and y > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    b = sxy / sxx
    ln_a = my - b * mx
    ss_res = sum((y - (ln_a + b * x)) ** 2 for x, y in pts)
    ss_tot = sum((y - my) ** 2 for _, y in pts)
    r2 = 1.0 - ss_res / ss_tot if ss_tot else 1.0
    return PowerLaw(math.exp(ln_a), b, r2, n)


# -- points and fits ---------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One measured point of a series: x and one measuring process's figures."""

    series: str  # "processes" or "mapped"
    x: int  # processes, or MiB mapped
    mode: str  # "small", "4k" or "thp"
    measurement: Measurement

    @property
    def above_setup_s(self) -> Optional[float]:
        """Median time above the same call's median time selecting no process (its fixed cost)."""
        m = self.measurement
        return m.median_s - m.setup_s if m.median_s is not None and m.setup_s is not None else None

    @property
    def rss_growth_mib(self) -> float:
        r = self.measurement.record
        return (r["hwm_kib"] - r["hwm_startup_kib"]) / 1024


def points(measurements: Sequence[Tuple[str, int, str, Measurement]]) -> List[Point]:
    """:class:`Point` of each ``(series: str, x: int, mode: str, measurement: Measurement)``, ordered by
    series, mode, target, x."""
    pts = [Point(series, x, mode, m) for series, x, mode, m in measurements]
    return sorted(pts, key=lambda p: (p.series, p.mode, p.measurement.target, p.x))


def _groups(pts: Sequence[Point]) -> Dict[Tuple[str, str, str], List[Point]]:
    out: Dict[Tuple[str, str, str], List[Point]] = {}
    for p in pts:
        out.setdefault((p.series, p.mode, p.measurement.target), []).append(p)
    return out


def fits(pts: Sequence[Point]) -> List[Dict[str, Any]]:
    """Per (series, mode, target) of *pts* (:class:`Point`): the power laws of time and of RSS growth, extrapolated.

    Each row: ``series``, ``mode``, ``target``, ``quantity`` (``time_s``,
    ``above_setup_s``: the time above the fixed cost of one call, which
    walks every task whatever the scope, or ``rss_growth_mib``), the fit (``a``, ``b``, ``r2``, ``n``, ``model``),
    ``x_target`` and ``predicted`` (the fit at ``x_target``); for RSS also
    ``predicted_peak_rss_mib`` (median start-up RSS plus the predicted growth).
    """
    rows = []
    for (series, mode, target), group in _groups(pts).items():
        x_target = TARGETS[series]
        startup_mib = statistics.median(p.measurement.record["hwm_startup_kib"] / 1024 for p in group)
        for quantity, xy in (
            ("time_s", [(p.x, p.measurement.median_s or 0.0) for p in group]),
            ("above_setup_s", [(p.x, p.above_setup_s or 0.0) for p in group]),
            ("rss_growth_mib", [(p.x, p.rss_growth_mib) for p in group]),
        ):
            law = fit_power_law(xy)
            row: Dict[str, Any] = {"series": series, "mode": mode, "target": target, "quantity": quantity,
                                   "x_unit": X_UNITS[series], "x_target": x_target,
                                   "fit": {**asdict(law), "model": law.model} if law else None,
                                   "predicted": law.at(x_target) if law else None}
            if quantity == "rss_growth_mib":
                row["startup_rss_mib"] = startup_mib
                row["predicted_peak_rss_mib"] = startup_mib + law.at(x_target) if law else None
            rows.append(row)
    return rows


# -- tables ----------------------------------------------------------------------------

_TARGET_LABELS = {"qemu": "QMP (host)", "kcore": "live /proc/kcore (guest)"}
_MODE_LABELS = {"small": "small processes", "4k": "4 KiB pages", "thp": "THP"}

POINT_HEADERS = ["series", "x", "pages", "audit", "median s", "setup s", "floor s", "peak RSS MiB",
                 "RSS growth MiB"]
FIT_HEADERS = ["series", "audit", "quantity", "model", "b", "r²", "points", "at", "predicted"]


def _x_label(series: str, x: float) -> str:
    if series == "mapped":
        return f"{x / 1024:,.4g} GiB" if x >= 1024 else f"{x:,.0f} MiB"
    return f"{x:,.0f} processes"


_QUANTITIES = {"time_s": "time (s)", "above_setup_s": "time above setup (s)",
               "rss_growth_mib": "peak RSS growth (MiB)"}


def point_rows(pts: Sequence[Point]) -> List[List[str]]:
    """One table row (list of str) per :class:`Point` of *pts*."""
    rows = []
    for p in pts:
        m = p.measurement
        rows.append([p.series, _x_label(p.series, p.x), _MODE_LABELS.get(p.mode, p.mode),
                     _TARGET_LABELS.get(m.target, m.target), _fmt(m.median_s, ".3g"), _fmt(m.setup_s, ".3g"),
                     _fmt(m.floor_s, ".3g"),
                     _fmt(m.record["hwm_kib"] / 1024, ".0f"), _fmt(p.rss_growth_mib, ".1f")])
    return rows


def fit_rows(rows: Sequence[Dict[str, Any]]) -> List[List[str]]:
    """One table row (list of str) per row of :func:`fits` in *rows*: time in s, RSS as the predicted peak in MiB."""
    out = []
    for r in rows:
        fit = r["fit"]
        what = _QUANTITIES[r["quantity"]]
        if r["quantity"] != "rss_growth_mib":
            predicted = _fmt(r["predicted"], ".3g") + " s" if r["predicted"] is not None else "—"
        else:
            predicted = ("—" if r["predicted"] is None else
                         f"+{r['predicted']:.3g} MiB (peak {r['predicted_peak_rss_mib']:,.0f} MiB)")
        out.append([
            f"{r['series']} ({_MODE_LABELS.get(r['mode'], r['mode'])})", _TARGET_LABELS.get(r["target"], r["target"]),
            what, fit["model"] if fit else "—", _fmt(fit["b"], ".3f") if fit else "—",
            _fmt(fit["r2"], ".3f") if fit else "—", str(fit["n"]) if fit else "0",
            _x_label(r["series"], r["x_target"]), predicted,
        ])
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(doc: Dict[str, Any], pts: Sequence[Point]) -> str:
    """The scale run's tables as Markdown (str), from *doc* (the ``scale.json`` dict) and *pts* (:class:`Point`)."""
    meta = doc["meta"]
    parts = [
        f"# drgn-p2p benchmark: scale, {meta['started']}",
        "",
        f"Kernel {meta['kernel']}, {meta['smp']} vCPUs under {meta['accel']}, host {meta['host']}. "
        f"Medians of {meta['repeat']} repeats per point, each point one fresh measuring process. "
        "\"floor\" is the bare cost of the audit's own page-table reads; \"RSS growth\" is the measuring "
        "process's peak RSS (VmHWM) above its RSS after drgn's start-up. Models: y = a·x^b, least "
        "squares on ln x, ln y (x: processes or MiB mapped); b is the exponent (1: linear); r² of the "
        "fit on the logarithms; the peak RSS is predicted as the start-up RSS plus the fitted growth. "
        "\"setup\" is the same audit() call selecting no process (layout, classifier, the walk over "
        "every task, whatever the scope); \"time above setup\" fits the median time minus it.",
        "",
    ]
    for name, series in meta["series"].items():
        parts.append(f"* {name}: guest {series['memory']}, "
                     f"{series['wall_s']:.0f} s from boot to shut-down" if series.get("wall_s") is not None
                     else f"* {name}: {series.get('why', 'not run')}")
    parts += ["", "## Points", "", _table(POINT_HEADERS, point_rows(pts)), "",
              "## Fits and extrapolation", "", _table(FIT_HEADERS, fit_rows(doc["fits"])), ""]
    if doc["notes"].get("failures"):
        parts += ["## Failures", ""] + [f"* {f}" for f in doc["notes"]["failures"]] + [""]
    return "\n".join(parts)


def _y(p: Point, quantity: str) -> float:
    if quantity == "time_s":
        return p.measurement.median_s or 0.0
    if quantity == "above_setup_s":
        return p.above_setup_s or 0.0
    return p.rss_growth_mib


def plot(pts: Sequence[Point], fit_doc: Sequence[Dict[str, Any]], path: Path) -> Optional[str]:
    """Log-log time and RSS growth of *pts* (:class:`Point`) per series with the fitted lines of *fit_doc*
    (:func:`fits`), to *path* (Path); None when written, else why not (str)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'drgn-p2p[bench]')"
    fig, axes = plt.subplots(3, 2, figsize=(13, 14))
    for col, series in enumerate(("processes", "mapped")):
        for row, quantity in enumerate(("time_s", "above_setup_s", "rss_growth_mib")):
            ax = axes[row][col]
            for (s, mode, target), group in _groups(pts).items():
                if s != series:
                    continue
                label = f"{_MODE_LABELS.get(mode, mode)}, {_TARGET_LABELS.get(target, target)}"
                ys = [_y(p, quantity) for p in group]
                shown = [(p.x, y) for p, y in zip(group, ys) if y > 0]
                if not shown:
                    continue
                line = ax.plot([x for x, _ in shown], [y for _, y in shown], marker="o", linestyle="", label=label)
                fit = next((f["fit"] for f in fit_doc if (f["series"], f["mode"], f["target"], f["quantity"])
                            == (series, mode, target, quantity)), None)
                if fit:
                    lo, hi = min(x for x, _ in shown), TARGETS[series]
                    xs = [lo * (hi / lo) ** (i / 50) for i in range(51)]
                    ax.plot(xs, [fit["a"] * x ** fit["b"] for x in xs], color=line[0].get_color(),
                            linestyle="--", label=f"fit: {fit['model']}")
            ax.axvline(TARGETS[series], color="grey", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("processes audited" if series == "processes" else "MiB mapped (one process)")
            ax.set_ylabel({"time_s": "median seconds of audit()", "above_setup_s": "median seconds above setup",
                           "rss_growth_mib": "peak RSS above start-up, MiB (VmHWM)"}[quantity])
            ax.set_title(f"{_QUANTITIES[quantity].split(' (')[0]} against "
                         f"{'processes' if series == 'processes' else 'mapped size'}")
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle("drgn-p2p audit at scale (log-log; dashed: power-law fits out to 10,000 processes / 1 TiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# -- running ---------------------------------------------------------------------------


def available_mib() -> int:
    """``MemAvailable`` of the host, in MiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def wait_for_memory(need_mib: int, max_wait: float, poll: float = 15.0) -> bool:
    """Wait up to *max_wait* seconds until the host has *need_mib* MiB available; whether it has."""
    deadline = time.monotonic() + max_wait
    while True:
        have = available_mib()
        if have >= need_mib:
            return True
        if time.monotonic() >= deadline:
            return False
        _console.print(f"bench: {have} MiB available on the host, waiting for {need_mib} …")
        time.sleep(poll)


def _methods(live: bool) -> List[Tuple[str, str, str]]:
    return [AUDIT_QMP] + ([AUDIT_LIVE] if live else [])


def _boot(kernel: Any, memory: str) -> Any:
    from .vm import start

    return start(kernel, [], memory=memory, timeout=900)


def run_processes(kernel: Any, out: Path, counts: Sequence[int], live: bool, repeat: int, timeout: float,
                  memory: str, collected: List[Tuple[str, int, str, Measurement]], notes: Dict[str, Any]) -> None:
    """The processes series: one swarm of ``max(counts)`` (ints), the audit scoped to the first N; appends
    ``(series, x, mode, Measurement)`` to *collected* and the run's notes to *notes*."""
    load = Load(f"small-x{max(counts)}", "small", max(counts))
    guest = _boot(kernel, memory)
    bench = Bench(guest, out, repeat, 0, timeout)
    try:
        _console.print(f"bench: holding {load.size} small processes …")
        bench.hold([load])
        pids = bench.held[load.name]
        for n in sorted(counts):
            chosen = Load(f"small-x{n}", "small", n)
            for method, target, where in _methods(live):
                m = bench.measure(f"processes-{n}", 0, method, target, where, scope_args(chosen, pids[:n]))
                if m is not None:
                    collected.append(("processes", n, "small", m))
    finally:
        guest.close()
        notes.update({f"processes_{k}": v for k, v in bench.notes.items()})


def run_mapped(kernel: Any, out: Path, sizes: Sequence[int], modes: Sequence[str], live: bool, repeat: int,
               timeout: float, collected: List[Tuple[str, int, str, Measurement]], notes: Dict[str, Any]) -> str:
    """The mapped series: one process at a time per size (MiB, ints) and mode (``4k``, ``thp``); appends
    ``(series, x, mode, Measurement)`` to *collected*; returns the guest's memory (str, QEMU ``-m``)."""
    memory = f"{max(sizes) + GUEST_OVERHEAD_MIB}M"
    guest = _boot(kernel, memory)
    bench = Bench(guest, out, repeat, 0, timeout)
    try:
        for mode in modes:
            for size in sorted(sizes):
                load = Load(f"{mode}-{size}M", mode, size)
                started = time.monotonic()
                _console.print(f"bench: holding {load.name} …", end="")
                bench.hold([load], wait=1500)
                _console.print(f" {time.monotonic() - started:.0f} s")
                for method, target, where in _methods(live):
                    m = bench.measure(load.name, size, method, target, where, scope_args(load, bench.held[load.name]))
                    if m is not None:
                        collected.append(("mapped", size, mode, m))
                bench.release(load)
    finally:
        guest.close()
        notes.update({f"mapped_{k}": v for k, v in bench.notes.items()})
    return memory


def main(kernel_name: str = "newest", out: Optional[Path] = None, repeat: int = 3,
         procs: Sequence[int] = (250, 500, 1000, 2000), mapped: Sequence[int] = (1024, 2048, 4096, 8192),
         thp: bool = False, live: bool = False, timeout: float = 1800, memory_wait: float = 1800) -> Path:
    """Run the scale benchmark; return the results directory (Path)."""
    from .kernels import ensure_kernel
    from .vm import accel_args

    out = Path(out) if out else _default_out()
    out.mkdir(parents=True, exist_ok=True)
    kernel = ensure_kernel(kernel_name)
    accel = "kvm" if "kvm" in accel_args() else "tcg"
    run_started = time.monotonic()
    meta: Dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "kernel": kernel.kver, "smp": 2, "accel": accel,
        "repeat": repeat, "live": live, "host": f"{platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}", "procs": list(procs), "mapped_mib": list(mapped),
        "modes": ["4k", "thp"] if thp else ["4k"], "targets": TARGETS, "series": {},
    }
    collected: List[Tuple[str, int, str, Measurement]] = []
    notes: Dict[str, Any] = {}
    if procs:
        memory = "3G"
        started = time.monotonic()
        _console.print(f"bench: processes series, booting {kernel.kver} ({accel}, {memory}) …")
        try:
            run_processes(kernel, out, procs, live, repeat, timeout, memory, collected, notes)
            meta["series"]["processes"] = {"memory": memory, "wall_s": time.monotonic() - started}
        except LabError as e:
            notes.setdefault("failures", []).append(f"processes series: {e}")
            meta["series"]["processes"] = {"why": f"failed: {e}"}
    sizes = sorted(mapped)
    while sizes and not wait_for_memory(sizes[-1] + GUEST_OVERHEAD_MIB + HOST_RESERVE_MIB, memory_wait):
        notes.setdefault("dropped_sizes_mib", []).append(sizes.pop())
        memory_wait = 0  # waited once already: take the largest that fits now
    if sizes:
        started = time.monotonic()
        _console.print(f"bench: mapped series, booting {kernel.kver} ({accel}, "
                       f"{sizes[-1] + GUEST_OVERHEAD_MIB} MiB) …")
        try:
            memory = run_mapped(kernel, out, sizes, meta["modes"], live, repeat, timeout, collected, notes)
            meta["series"]["mapped"] = {"memory": memory, "wall_s": time.monotonic() - started}
        except LabError as e:
            notes.setdefault("failures", []).append(f"mapped series: {e}")
            meta["series"]["mapped"] = {"why": f"failed: {e}"}
    elif mapped:
        meta["series"]["mapped"] = {"why": "not run: the host never had the memory for the smallest size"}
    meta["wall_s"] = time.monotonic() - run_started
    return render(out, meta, points(collected), notes)


def render(out: Path, meta: Dict[str, Any], pts: Sequence[Point], notes: Dict[str, Any]) -> Path:
    """Fit *pts*, write ``scale.json``, ``scale.md`` and ``scale.png`` to *out* (Path); return *out*."""
    doc: Dict[str, Any] = {
        "schema": "drgn-p2p/bench-scale/1",
        "meta": meta,
        "points": [{"series": p.series, "x": p.x, "mode": p.mode, "rss_growth_mib": p.rss_growth_mib,
                    "above_setup_s": p.above_setup_s, **p.measurement.as_dict()} for p in pts],
        "fits": fits(pts),
        "notes": notes,
    }
    why_not = plot(pts, doc["fits"], out / "scale.png")
    doc["plot"] = str(out / "scale.png") if why_not is None else why_not
    (out / "scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc, pts)
    (out / "scale.md").write_text(text)
    _table_console(_console).print(escape(text))
    _console.print(f"bench: scale results in {escape(str(out))}"
                   + (f" (no plot: {escape(why_not)})" if why_not else ""))
    return out


def rerender(out: Path) -> Path:
    """Fit the points of *out*/``scale.json`` (Path) again and rewrite the results (after changing the models)."""
    doc = json.loads((Path(out) / "scale.json").read_text())
    pts = points([(p["series"], p["x"], p["mode"],
                   Measurement(p["scope"], p["mapped_mib"], p["method"], p["target"],
                               {**p, "scope": p["measured"]})) for p in doc["points"]])
    return render(Path(out), doc["meta"], pts, doc["notes"])


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        rerender(Path(arg))
