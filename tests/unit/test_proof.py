# SPDX-License-Identifier: GPL-2.0-or-later
"""The proof record (drgn_p2p.lab.proof): judging cases, rule statuses, the document and its rendering."""

import dataclasses
import json
from typing import List, Optional

import pytest

from drgn_p2p.lab import kmod, proof
from drgn_p2p.records import Finding, Severity
from drgn_p2p.rules import RULES, rule_by_id

from .layouts import make_layout, make_vma

L61 = make_layout((6, 1))
PID = 1  # make_vma's
A = 0x7F00_0000_0000
LEN = 0x4000


def hit(rule: str, start: int = A, end: int = A + LEN, severity: Optional[Severity] = None, pid: int = PID) -> Finding:
    """A finding of *rule* (its catalogue severity unless given) over [start, end) in process *pid*."""
    vma = dataclasses.replace(make_vma(0, start=A, end=A + LEN), pid=pid)
    return Finding(rule, severity or rule_by_id(rule).severity, vma, start, end, (end - start) >> 12, "m")


def record(trips, findings: List[Finding], skip=None, expected_skip=None):
    """The case record of a case tripping *trips* mapped at [A, A + LEN) by PID (or skipped)."""
    spec = proof.CaseSpec("case", trips, "what")
    return proof.case_record(spec, PID, None if skip else A, None if skip else LEN, skip, findings, expected_skip)


def test_every_rule_has_a_case_or_a_reason():
    """The static half of the proof: each rule is tripped by some module case or says why it cannot be."""
    tripped = {t for c in kmod.VIOLATE_CASES for t in c.trips}
    ids = {r.id for r in RULES}
    assert tripped <= ids
    assert set(proof.NOT_PROVABLE) <= ids
    assert ids == tripped | set(proof.NOT_PROVABLE)
    assert not tripped & set(proof.NOT_PROVABLE)
    for rules in proof.CONTROL_DOMAINS.values():
        assert set(rules) <= ids


def test_fired_needs_exactly_the_trips_over_the_whole_mapping():
    assert record(("no-memmap-not-special",), [hit("no-memmap-not-special")])["verdict"] == "fired"
    # Two findings that together cover the mapping.
    halves = [hit("no-memmap-not-special", A, A + 0x2000), hit("no-memmap-not-special", A + 0x2000, A + LEN)]
    assert record(("no-memmap-not-special",), halves)["verdict"] == "fired"
    r = record(("no-memmap-not-special",), [hit("no-memmap-not-special", A, A + 0x2000)])
    assert r["verdict"] == "wrong" and "not all of" in r["problems"][0]
    r = record(("no-memmap-not-special",), [hit("no-memmap-not-special"), hit("garbage-entry")])
    assert r["verdict"] == "wrong" and r["problems"] == ["unexpected garbage-entry reported"]
    r = record(("devmap-not-dax", "devmap-pte-not-special"), [hit("devmap-not-dax")])
    assert r["problems"] == ["devmap-pte-not-special not reported"]
    r = record(("garbage-entry",), [hit("garbage-entry", severity=Severity.ERROR)])
    assert "catalogue says warning" in r["problems"][0]
    # Another process's finding at the same address is not the case's.
    assert record(("garbage-entry",), [hit("garbage-entry", pid=2)])["problems"] == ["garbage-entry not reported"]


def test_controls_and_skips():
    assert record((), [])["verdict"] == "silent"
    assert record((), [hit("mixedmap-all-struct-pages")])["verdict"] == "silent"  # info is allowed
    assert record((), [hit("pfnmap-not-special")])["verdict"] == "wrong"
    r = record(("p2pdma-leaf",), [], skip="not expressible (EOPNOTSUPP)", expected_skip="kernel lacks CONFIG_X")
    assert r["verdict"] == "skipped" and r["skip"].startswith("kernel lacks CONFIG_X")
    assert record(("p2pdma-leaf",), [], skip="ENODEV")["verdict"] == "wrong"
    assert record(("p2pdma-leaf",), [hit("p2pdma-leaf")], expected_skip="kernel lacks X")["verdict"] == "wrong"


def _kernel(cases, controls=(), findings=None, na=None, clean=()):
    """A 6.1 kernel entry; every control saw *findings*."""
    return proof.kernel_record(
        "6.1", "6.1.0-50-amd64", L61, na or {}, cases, list(controls),
        {c.name: findings or [] for c in controls}, list(clean), {"anon": "held"},
    )


def test_rule_statuses(monkeypatch):
    cases = [record(("garbage-entry",), [hit("garbage-entry")])]
    cases[0]["case"] = "unknown-marker"
    skipped = record(("device-private-present",), [], skip="EOPNOTSUPP", expected_skip="kernel lacks CONFIG_DEVICE_PRIVATE")
    exclusive = proof.Control("hmm-exclusive", PID, A, A + LEN)
    k = _kernel(cases + [skipped], [exclusive], na={"devmap-not-dax": "no devmap bit"})
    rules = k["rules"]
    assert rules["garbage-entry"]["status"] == "fired" and rules["garbage-entry"]["fired_by"] == ["unknown-marker"]
    assert rules["devmap-not-dax"] == {**rules["devmap-not-dax"], "status": "n/a", "reason": "no devmap bit"}
    assert rules["device-private-present"]["status"] == "n/a"
    assert "kernel lacks CONFIG_DEVICE_PRIVATE" in rules["device-private-present"]["reason"]
    # Silence on a legitimate mapping proves nothing for a rule that has a case.
    assert rules["device-exclusive-target"]["status"] == "failed"
    assert rules["device-exclusive-target"]["silent_on"] == ["hmm-exclusive"]
    # Neither a case nor a legitimate mapping held: failed, and said so.
    assert rules["device-private-entry-target"]["status"] == "failed"
    assert rules["pfnmap-not-special"]["status"] == "failed"
    assert any(p.startswith("rule pfnmap-not-special") for p in k["problems"])

    # A rule that cannot be proven: silent on a legitimate mapping, else failed.
    monkeypatch.setattr(proof, "NOT_PROVABLE", {"device-exclusive-target": "cannot be held", "p2pdma-leaf": "no"})
    rules = _kernel(cases, [exclusive])["rules"]
    assert rules["device-exclusive-target"]["status"] == "silent"
    assert rules["device-exclusive-target"]["reason"] == "cannot be held"
    assert rules["device-exclusive-target"]["silent_on"] == ["hmm-exclusive"]
    assert rules["p2pdma-leaf"]["status"] == "failed"
    assert "no legitimate mapping of its kind was held" in rules["p2pdma-leaf"]["reason"]


def test_noisy_control_and_clean_errors_are_problems():
    ctl = proof.Control("scenario:pcibar", PID, A, A + LEN)
    k = _kernel([], [ctl], findings=[hit("no-memmap-not-special")], clean=[hit("special-outside-pfnmap")])
    assert k["controls"][0]["noisy"] == ["no-memmap-not-special"]
    assert "pcibar" not in k["rules"]["no-memmap-not-special"]["silent_on"]
    assert any("clean guest: special-outside-pfnmap" in p for p in k["problems"])
    assert k["clean"]["findings"]["error"] == 1


def test_document_merge_load_render(tmp_path):
    entry = _kernel([record(("garbage-entry",), [hit("garbage-entry")])])
    path = tmp_path / "proof.json"
    proof.write(path, proof.merge(None, {"newest": {**entry, "name": "newest"}}))
    proof.write(path, proof.merge(proof.load(path), {"6.1": entry}))
    doc = proof.load(path)
    assert list(doc["kernels"]) == ["6.1", "newest"]
    rows = proof.matrix(doc)
    assert [r["id"] for r in rows] == [r.id for r in RULES]
    page = proof.render_markdown(doc)
    assert page.startswith("# Rule proof matrix\n")
    assert "| `garbage-entry` | warning | **fired**: `case` | **fired**: `case` |" in page
    assert proof.render_markdown(doc) == page  # deterministic
    (tmp_path / "other.json").write_text(json.dumps({"schema": "x"}))
    with pytest.raises(ValueError):
        proof.load(tmp_path / "other.json")


def test_cli_renders_a_proof(tmp_path):
    from click.testing import CliRunner

    from drgn_p2p.cli import cli

    path = tmp_path / "proof.json"
    proof.write(path, proof.merge(None, {"6.1": _kernel([record(("garbage-entry",), [hit("garbage-entry")])])}))
    out = CliRunner().invoke(cli, ["rules", "--proof", str(path)])
    assert out.exit_code == 0, out.output
    assert "garbage-entry" in out.output and "fired" in out.output
    out = CliRunner().invoke(cli, ["rules", "--proof", str(path), "--json"])
    assert json.loads(out.output)[0]["kernels"]["6.1"]["status"] == "failed"
    out = CliRunner().invoke(cli, ["rules", "--proof", str(tmp_path / "missing.json")])
    assert out.exit_code == 2
