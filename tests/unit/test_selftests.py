# SPDX-License-Identifier: GPL-2.0-or-later
"""The mm-selftests workload: which tests a kernel runs, what their audits saw, the document."""

from types import SimpleNamespace

import pytest

from drgn_p2p.lab import LabError
from drgn_p2p.lab import selftests as S


def kernel(name="newest", **config):
    return SimpleNamespace(name=name, kver="7.2.13+deb14-amd64", config={
        "CONFIG_USERFAULTFD": "y", "CONFIG_KSM": "y", "CONFIG_SECRETMEM": "y", "CONFIG_HUGETLBFS": "y",
        "CONFIG_MIGRATION": "y", **config})


ALL = sorted({p for t in S.SELFTESTS for p in t.programs})


def test_catalogue_names_are_unique_and_tiers_known():
    names = [t.name for t in S.SELFTESTS]
    assert len(names) == len(set(names))
    assert {t.tier for t in S.SELFTESTS} <= set(S.TIERS)


def test_select_core_elsewhere_full_on_newest():
    core, skipped = S.select(kernel("6.12"), ALL)
    assert all(t.tier == "core" for t, _ in core)
    assert skipped["cow"] == "tier full (this run: core)"
    full, _ = S.select(kernel("newest"), ALL)
    assert {t.name for t, _ in full} > {t.name for t, _ in core}


def test_select_reasons():
    chosen, skipped = S.select(kernel("newest"), [p for p in ALL if p != "guard-regions"], test_hmm=False)
    assert "guard-regions" in skipped["guard-regions"] and "not in this kernel's selftests" in skipped["guard-regions"]
    assert skipped["hmm-tests"] == "kernel lacks CONFIG_DEVICE_PRIVATE"
    chosen, skipped = S.select(kernel("newest", CONFIG_DEVICE_PRIVATE="y"), ALL, test_hmm=False)
    assert "test_hmm is not loaded" in skipped["hmm-tests"]
    chosen, skipped = S.select(kernel("newest", CONFIG_DEVICE_PRIVATE="y"), ALL, test_hmm=True)
    assert "hmm-tests" in {t.name for t, _ in chosen}
    with pytest.raises(LabError):
        S.select(kernel(), ALL, tier="everything")


def test_select_takes_the_name_the_tree_has():
    # 6.1's tree has userfaultfd (uffd-stress since 6.4) and no uffd-unit-tests.
    chosen, skipped = S.select(kernel("6.1"), ["userfaultfd", "gup_test"])
    assert ("uffd-stress-anon", "userfaultfd") in {(t.name, p) for t, p in chosen}
    assert "uffd-unit-tests-move" in skipped


def test_parse_totals():
    log = "ok 1 x\n# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:0\n# Totals: pass:3  fail:1 skip:2\n"
    assert S.parse_totals(log) == "pass:3 fail:1 skip:2"
    assert S.parse_totals("no totals") == ""


def test_mapped_by_test_keeps_the_most_seen_and_flags():
    doc = {"vmas": [
        {"comm": "hmm-tests", "pages": {"ram": 4}, "entries": {"present": 4, "device-private": 8},
         "flag_names": ["READ", "WRITE"]},
        {"comm": "hmm-tests", "pages": {"ram": 2}, "entries": {}, "flag_names": ["READ", "MIXEDMAP", "SHARED"]},
        {"comm": "bash", "pages": {"ram": 100}, "entries": {}, "flag_names": []},
    ]}
    into = {}
    S.mapped_by_test(doc, ["hmm-tests"], into)
    S.mapped_by_test({"vmas": [{"comm": "hmm-tests", "pages": {"ram": 1}, "entries": {}, "flag_names": []}]},
                     ["hmm-tests"], into)
    assert into == {"hmm-tests": {"pages": {"ram": 6}, "entries": {"device-private": 8},
                                  "flags": [["MIXEDMAP", "SHARED"]]}}


def _run_doc():
    audit = lambda via, running, findings, code=0: {  # noqa: E731
        "via": via, "at": 1.0, "seconds": 2.0, "exit_code": code, "running": running, "findings": findings, "error": ""}
    return {
        "kver": "7.2.13+deb14-amd64", "tier": "full", "name": "newest", "when": "now",
        "tests": [{"name": "uffd-stress-anon", "command": "uffd-stress anon 20 16", "status": 0, "seconds": 29.0,
                   "totals": "pass:1"},
                  {"name": "cow", "command": "cow", "status": 1, "seconds": 62.0, "totals": ""}],
        "skipped": {"hmm-tests": "kernel lacks CONFIG_DEVICE_PRIVATE"},
        "audits": [audit("qemu", ["uffd-stress-anon"], [["r-info", "info", "uffd-stress", 5, "0x1", "m"],
                                                        ["p2p", "info", "holder", 9, "0x2", "m"]]),
                   audit("live", ["uffd-stress-anon", "cow"], [["r-info", "info", "uffd-stress", 5, "0x1", "m"]])],
        "mapped": {"uffd-stress": {"pages": {"ram": 10}, "entries": {"marker": 2}, "flags": [["UFFD_WP"]]}},
        "timings": {"boot": 120.0, "build": 3.0, "run": 300.0},
    }


def test_attribute_by_comm():
    assert S.attribute(_run_doc()) == {"uffd-stress-anon": [("r-info", "info", 2)], "": [("p2p", "info", 1)]}


def test_render_markdown():
    page = S.render_markdown({"schema": S.SCHEMA, "kernels": {"newest": _run_doc()}})
    assert "| `uffd-stress-anon` | `uffd-stress anon 20 16` | 0 (pass) | 29 | pass:1 | 2 | ram 10 — entries: marker 2 — in UFFD_WP | info `r-info` (2 audits) |" in page
    assert "| `cow` | `cow` | 1 (fail) |" in page
    assert "1 via qemu (exit codes 0×1), 1 via live (exit codes 0×1)" in page
    assert "boot 2.0 min, build 0.1 min, run 5.0 min" in page
    assert "`hmm-tests` (kernel lacks CONFIG_DEVICE_PRIVATE)" in page
    assert "info `p2p` (1 audits)" in page


def test_merge_keeps_other_kernels():
    one = S.merge(None, {"6.1": {"x": 1}})
    both = S.merge(one, {"newest": {"y": 2}})
    assert both["schema"] == S.SCHEMA and list(both["kernels"]) == ["6.1", "newest"]
