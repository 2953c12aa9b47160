# SPDX-License-Identifier: GPL-2.0-or-later
"""
The benchmark end to end on the newest lab kernel, small: one boot holding a
64 MiB mapping of 4 KiB pages, one of THPs, a sparse one and ten small
processes, every method measured in a fresh process (live in the guest and
over QMP from the host). What it must give, per scope: the audit's floor and
checked floor, the per-stage split of its samples, the ratios, and results
that agree with the kernel's own walk — the audit counts exactly the present
pages ``/proc/PID/pagemap`` counts for a held load, and reads the tables its
floor reads.
"""

import json

import pytest

from drgn_p2p.lab import bench
from drgn_p2p.lab.bench_stages import OTHER, STAGES

pytestmark = pytest.mark.lab


def test_a_small_benchmark_measures_every_scope(lab_session, tmp_path) -> None:
    lab_session.close()  # the benchmark boots its own guest: at most one at a time
    out = bench.main("newest", memory="4G", out=tmp_path, repeat=1, sample=256, sizes=(64,), small=10,
                     system=False, crash=False, timeout=900)
    doc = json.loads((out / "results.json").read_text())
    scopes = ["4k-64M", "thp-64M", "sparse-64M", "small-x10"]
    assert not doc["notes"].get("failures"), doc["notes"]["failures"]
    assert [r["scope"] for r in doc["ratios"]] == scopes
    by = {(r["scope"], r["method"], r["target"]): r for r in doc["results"]}
    for scope in scopes:
        pagemap = by[(scope, "pagemap", "pagemap")]
        for target in ("kcore", "qemu"):
            audit = by[(scope, "audit", target)]
            # The kernel's own walk and the audit see the same present pages of a held load.
            assert audit["present"] == pagemap["present"] > 0, (scope, target)
            assert audit["floor_reads"] == audit["tables_read"] > 0
            # Both floors measured (no order between them is asserted: timings are not assertions).
            assert audit["floor_median_s"] > 0 and audit["floor_checked_median_s"] > 0
            stages = audit["stages"]
            assert stages["samples"] > 0 and stages["calls"] >= 1
            assert set(stages["shares"]) == {*STAGES, OTHER}
            assert abs(sum(stages["shares"].values()) - 1) < 1e-9
        row = next(r for r in doc["ratios"] if r["scope"] == scope)
        for key in ("audit_live_over_floor", "audit_qemu_over_floor", "floor_checked_live_over_floor",
                    "audit_live_over_pagemap", "audit_live_over_follow_live", "audit_qemu_over_follow_qemu"):
            assert row[key] is not None and row[key] > 0, (scope, key)
    markdown = (out / "results.md").read_text()
    assert "## Where the audit's time goes" in markdown and "one integer test per table" in markdown
