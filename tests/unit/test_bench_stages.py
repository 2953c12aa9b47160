# SPDX-License-Identifier: GPL-2.0-or-later
"""Where an audit's time goes: a sample is charged to the innermost pipeline
stage on the stack, the sampler measures real CPU time, and the bench's
tables show the split."""


from drgn_p2p.lab import bench
from drgn_p2p.lab.bench_stages import OTHER, STAGES, sample_stages, stage_of_stack


def test_a_sample_belongs_to_the_innermost_stage_on_the_stack() -> None:
    # classify() called by the walk's scan of a PTE slice, inside audit_vma():
    stack = [("drgn.helpers.linux.mm", "pfn_to_page"), ("drgn_p2p.classify", "classify"),
             ("drgn_p2p.pipeline", "_segments"), ("drgn_p2p.pipeline", "audit_vma"),
             ("drgn_p2p.pipeline", "audit")]
    assert stage_of_stack(stack) == "scan, decode, classify"
    assert stage_of_stack(stack[3:]) == "per-VMA bookkeeping"
    # A page-table read under the walk is a read, not the walk.
    assert stage_of_stack([("drgn_p2p.walk", "read"), ("drgn_p2p.walk", "_entry"),
                           ("drgn_p2p.walk", "_walk")]) == "table reads"
    assert stage_of_stack([("drgn_p2p.pipeline", "audit")]) == OTHER


def _busy(module: str, name: str):
    """A CPU-bound function whose frames look like *module*.*name*."""
    namespace = {"__name__": module}
    exec(f"def {name}():\n    x = 0\n    for i in range(300000):\n        x += i * i\n    return x\n", namespace)
    return namespace[name]


def test_the_sampler_charges_cpu_time_to_the_stage_that_spends_it() -> None:
    rules = _busy("drgn_p2p.rules", "evaluate_run")
    gup = _busy("drgn_p2p.gup", "segments")

    def audit() -> None:
        rules()
        gup()
        gup()

    result = sample_stages(audit, min_cpu_s=0.6)
    shares = result["shares"]
    assert result["samples"] >= 50 and result["calls"] >= 1
    assert abs(sum(shares.values()) - 1) < 1e-9 and set(shares) == {*STAGES, OTHER}
    assert shares["gup"] > 0.5 and 0.2 < shares["rules"] < 0.5  # two thirds and one third of the work


def test_the_stage_table_is_in_the_results() -> None:
    record = {"times_s": [1.0], "slots": 262144, "present": 262144, "hwm_kib": 380000, "hwm_startup_kib": 370000,
              "stages": {"samples": 400, "calls": 3, "shares": {"walk": 0.25, "rules": 0.75}}}
    results = [bench.Measurement("small-x200", 0, "audit", "kcore", record)]
    assert bench.stage_rows(results) == [["small-x200", "drgn-p2p audit, live /proc/kcore (guest)", "400"]
                                         + [{"walk": "25%", "rules": "75%"}.get(s, "0%") for s in (*STAGES, OTHER)]]
    doc = {"ratios": bench.ratios(results), "startup": bench.startup(results), "notes": {},
           "meta": {k: "x" for k in ("started", "kernel", "memory", "smp", "accel", "host", "repeat")}}
    assert "## Where the audit's time goes" in bench.markdown(doc, results)
