# SPDX-License-Identifier: GPL-2.0-or-later
"""The scale benchmark's arithmetic: the log-log least-squares power law, its
extrapolation, and the tables, checked against numbers worked out by hand."""

import json

import pytest

from drgn_p2p.lab import bench, bench_scale
from drgn_p2p.lab.bench_scale import fit_power_law


def test_points_on_a_power_law_give_it_back() -> None:
    # y = 2·x²: 2, 8, 32 at 1, 2, 4.
    law = fit_power_law([(1, 2), (2, 8), (4, 32)])
    assert law is not None
    assert law.a == pytest.approx(2.0)
    assert law.b == pytest.approx(2.0)
    assert law.r2 == pytest.approx(1.0)
    assert law.n == 3
    assert law.at(10) == pytest.approx(200.0)


def test_least_squares_on_the_logarithms() -> None:
    # (1, 1), (2, 4), (4, 8): with L = ln 2, ln x = 0, L, 2L and ln y = 0, 2L, 3L.
    # Means L and 5L/3; Σdx·dy = (−L)(−5L/3) + 0 + L(4L/3) = 3L², Σdx² = 2L²,
    # so b = 3/2 and ln a = 5L/3 − 3L/2 = L/6: a = 2^(1/6).
    # Residuals in log space: −L/6, +L/3, −L/6 → SSres = L²/6;
    # SStot = (25 + 1 + 16)L²/9 = 14L²/3; r² = 1 − (1/6)/(14/3) = 1 − 1/28.
    law = fit_power_law([(1, 1), (2, 4), (4, 8)])
    assert law is not None
    assert law.b == pytest.approx(1.5)
    assert law.a == pytest.approx(2 ** (1 / 6))
    assert law.r2 == pytest.approx(27 / 28)
    # Extrapolated to 16: 2^(1/6) · 16^1.5 = 2^(1/6 + 6).
    assert law.at(16) == pytest.approx(2 ** (37 / 6))
    assert law.model == "y = 1.122·x^1.500"


def test_what_a_logarithm_cannot_take_is_left_out() -> None:
    assert fit_power_law([(1, 3), (2, 0.0), (0, 5)]) is None  # one usable point
    assert fit_power_law([(2, 3), (2, 5)]) is None  # one distinct x
    law = fit_power_law([(1, 3), (2, -1.0), (3, 3)])  # a flat line through the rest
    assert law is not None and law.b == pytest.approx(0.0) and law.a == pytest.approx(3.0)
    assert law.r2 == 1.0  # nothing to explain


def _point(series: str, x: int, mode: str, target: str, times, hwm_mib: float, startup_mib: float):
    record = {"times_s": times, "slots": x * 16, "hwm_kib": hwm_mib * 1024, "hwm_startup_kib": startup_mib * 1024,
              "floor_s": [t / 10 for t in times]}
    return (series, x, mode, bench.Measurement(f"{series}-{x}", 0, "audit", target, record))


#: Processes over QMP: t = 0.001·n (medians 0.25, 0.5, 1.0, 2.0 s), RSS
#: growth 0.01·n MiB above a 360 MiB start-up (2.5 … 20 MiB).
PROCESSES = [_point("processes", n, "small", "qemu", [n / 1000 * 0.9, n / 1000, n / 1000 * 1.2],
                    360 + n / 100, 360) for n in (2000, 250, 1000, 500)]
#: 4 KiB mapped over QMP: t = 0.0001·MiB^1.5 (3.2768, 9.268…), growth constant 8 MiB.
MAPPED = [_point("mapped", mib, "4k", "qemu", [1e-4 * mib ** 1.5], 372, 364) for mib in (1024, 4096)]


def test_fits_per_series_extrapolate_to_the_targets() -> None:
    pts = bench_scale.points(PROCESSES + MAPPED)
    assert [(p.series, p.x) for p in pts] == [("mapped", 1024), ("mapped", 4096), ("processes", 250),
                                               ("processes", 500), ("processes", 1000), ("processes", 2000)]
    rows = {(r["series"], r["quantity"]): r for r in bench_scale.fits(pts)}
    t = rows["processes", "time_s"]
    assert t["fit"]["b"] == pytest.approx(1.0) and t["fit"]["a"] == pytest.approx(0.001)
    assert t["x_target"] == 10_000 and t["predicted"] == pytest.approx(10.0)
    rss = rows["processes", "rss_growth_mib"]
    assert rss["fit"]["b"] == pytest.approx(1.0)
    assert rss["predicted"] == pytest.approx(100.0)  # 0.01 MiB × 10,000
    assert rss["predicted_peak_rss_mib"] == pytest.approx(460.0)  # on 360 MiB of start-up
    t = rows["mapped", "time_s"]
    assert t["fit"]["b"] == pytest.approx(1.5)
    assert t["x_target"] == 1 << 20
    assert t["predicted"] == pytest.approx(1e-4 * 2 ** 30)  # (2^20)^1.5 = 2^30
    rss = rows["mapped", "rss_growth_mib"]
    assert rss["fit"]["b"] == pytest.approx(0.0) and rss["predicted_peak_rss_mib"] == pytest.approx(372.0)


def test_tables() -> None:
    pts = bench_scale.points(PROCESSES + MAPPED)
    rows = bench_scale.point_rows(pts)
    assert rows[0] == ["mapped", "1 GiB", "4 KiB pages", "QMP (host)", "3.28", "—", "0.328", "372", "8.0"]
    assert rows[2] == ["processes", "250 processes", "small processes", "QMP (host)", "0.25", "—", "0.025",
                       "362", "2.5"]
    fit_rows = bench_scale.fit_rows(bench_scale.fits(pts))
    assert ["processes (small processes)", "QMP (host)", "time (s)", "y = 0.001·x^1.000", "1.000", "1.000",
            "4", "10,000 processes", "10 s"] in fit_rows
    assert ["mapped (4 KiB pages)", "QMP (host)", "time (s)", "y = 0.0001·x^1.500", "1.500", "1.000", "2",
            "1,024 GiB", "1.07e+05 s"] in fit_rows
    assert fit_rows[-1][-1] == "+100 MiB (peak 460 MiB)"
    doc = {"meta": {"started": "then", "kernel": "7.2", "smp": 2, "accel": "tcg", "host": "x86_64", "repeat": 3,
                    "series": {"processes": {"memory": "3G", "wall_s": 600.0},
                               "mapped": {"why": "not run: no memory"}}},
           "fits": bench_scale.fits(pts), "notes": {"failures": ["mapped series: boom"]}}
    text = bench_scale.markdown(doc, pts)
    assert "* processes: guest 3G, 600 s from boot to shut-down" in text
    assert "* mapped: not run: no memory" in text
    assert "| processes | 2,000 processes | small processes | QMP (host) | 2 | — | 0.2 | 380 | 20.0 |" in text
    assert "* mapped series: boom" in text


def test_time_above_setup_takes_off_the_fixed_cost() -> None:
    # Medians 1.25 and 2.25 s over a setup of 0.25 s: 1 and 2 s above it at 1 and 2 processes, y = x.
    pts = bench_scale.points([
        ("processes", n, "small", bench.Measurement(f"processes-{n}", 0, "audit", "qemu", {
            "times_s": [n + 0.25], "setup_s": [0.25], "slots": 16, "hwm_kib": 1024, "hwm_startup_kib": 1024}))
        for n in (1, 2)])
    assert [p.above_setup_s for p in pts] == [1.0, 2.0]
    row = next(r for r in bench_scale.fits(pts) if r["quantity"] == "above_setup_s")
    assert row["fit"]["a"] == pytest.approx(1.0) and row["fit"]["b"] == pytest.approx(1.0)
    assert row["predicted"] == pytest.approx(10_000)
    assert ["processes (small processes)", "QMP (host)", "time above setup (s)", "y = 1·x^1.000", "1.000", "1.000",
            "2", "10,000 processes", "1e+04 s"] in bench_scale.fit_rows([row])
    # No RSS growth at all: nothing to fit.
    rss = next(r for r in bench_scale.fits(pts) if r["quantity"] == "rss_growth_mib")
    assert rss["fit"] is None and rss["predicted_peak_rss_mib"] is None


def test_results_are_fitted_again_from_their_json(tmp_path) -> None:
    meta = {"started": "then", "kernel": "7.2", "smp": 2, "accel": "tcg", "host": "x86_64", "repeat": 3,
            "series": {"processes": {"memory": "3G", "wall_s": 600.0}}}
    bench_scale.render(tmp_path, meta, bench_scale.points(PROCESSES + MAPPED), {})
    first = json.loads((tmp_path / "scale.json").read_text())
    (tmp_path / "scale.md").unlink()
    bench_scale.rerender(tmp_path)
    again = json.loads((tmp_path / "scale.json").read_text())
    assert again["fits"] == first["fits"] and again["points"] == first["points"]
    assert "| processes | 250 processes |" in (tmp_path / "scale.md").read_text()
