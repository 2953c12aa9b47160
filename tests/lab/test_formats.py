# SPDX-License-Identifier: GPL-2.0-or-later
"""``audit --format ktap`` and ``--format junit`` over QMP of the newest lab
kernel, run the way ``drgn-p2p lab run`` runs each audit: the KTAP read by the
kernel's own parser, the JUnit XML validated against junit-10.xsd, both
agreeing with the JSON document of the same guest."""

import json
from pathlib import Path

import pytest
from report_checkers import check_audit_json, junit_schema, parse_ktap, rule_results

from drgn_p2p.lab.cli import run_audit
from drgn_p2p.rules import RULES

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def guest(lab_guest):
    return lab_guest("newest")


def test_ktap_and_junit_over_qmp(guest, tmp_path: Path) -> None:
    code, output = run_audit(guest, "qemu", ["--json", "-o", str(tmp_path / "audit.json")], tmp_path)
    assert code in (0, 1), output
    doc = json.loads((tmp_path / "audit.json").read_text())
    check_audit_json(doc)
    expected = [r.id for r in RULES if r.id in doc["rules"] or r.id in doc["not_applicable"]]
    assert doc["not_applicable"], "the newest kernel has no devmap bit: its devmap rules must be skipped"
    failing = {f["rule"] for f in doc["findings"] if f["severity"] == "error"}

    # KTAP on stdout, as 'lab run --format ktap' shows it (stderr lines around it are not KTAP).
    ktap_code, ktap = run_audit(guest, "qemu", ["--format", "ktap"], tmp_path)
    assert ktap_code == code, ktap
    test = parse_ktap(ktap)
    c = test.counts
    assert (c.errors, c.crashed) == (0, 0), ktap
    assert [t.name for t in test.subtests] == expected
    assert c.skipped == len(doc["not_applicable"])
    results = rule_results(test)
    assert {r for r, (status, _) in results.items() if status == "FAILURE"} == failing
    assert {r for r, (status, _) in results.items() if status == "SKIPPED"} == set(doc["not_applicable"])
    assert c.failed == sum(sub == "FAILURE" for _, subs in results.values() for sub in subs)
    # Info findings (the lab's VM_MIXEDMAP mappings) are passing subtests with their evidence.
    if any(f["rule"] == "mixedmap-all-struct-pages" for f in doc["findings"]):
        status, subs = results["mixedmap-all-struct-pages"]
        assert status == "SUCCESS" and subs and set(subs) == {"SUCCESS"}

    junit_code, output = run_audit(guest, "qemu", ["--format", "junit", "-o", str(tmp_path / "audit.xml")], tmp_path)
    assert junit_code == code, output
    junit_schema().validate(str(tmp_path / "audit.xml"))
    import xml.etree.ElementTree as ET

    suite = ET.parse(tmp_path / "audit.xml").getroot().find("testsuite")
    assert [case.get("name") for case in suite.findall("testcase")] == expected
    assert suite.get("skipped") == str(len(doc["not_applicable"]))
    assert {case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None} == failing
    assert {p.get("name"): p.get("value") for p in suite.find("properties")}["kernel.release"] == doc["kernel"]["release"]
