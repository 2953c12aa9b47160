# SPDX-License-Identifier: GPL-2.0-or-later
"""
``audit --baseline`` on a real kernel: the newest lab guest audited over QMP
with ``--fail-on info`` fails on its info findings (the vDSO's
``VM_MIXEDMAP`` VMA is one in every process); a baseline naming each
(rule, mapping kind) found — written as a user would, by rule, file and
``vm_ops``, no address or PID — makes the same audit pass, with every finding
still reported as suppressed in JSON and as a KTAP ``# SKIP`` that the
kernel's own parser reads; a baseline that leaves one kind out fails on
exactly that kind's findings.
"""

import json
import subprocess
import sys
from typing import Dict, List, Set, Tuple

import pytest
from report_checkers import check_audit_json, parse_ktap, rule_results

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def guest(lab_guest):
    return lab_guest("newest")


def audit(guest, *args: str) -> Tuple[int, str, str]:
    argv = [sys.executable, "-m", "drgn_p2p", "audit", "--qemu", guest.qmp_path, "-s", str(guest.kernel.vmlinux),
            "--fail-on", "info", *args]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    return proc.returncode, proc.stdout, proc.stderr


def kinds_found(doc) -> Set[Tuple[str, str, str]]:
    """(rule, file, ops) of every finding, as a user reads them off the report."""
    return {(f["rule"], f["vma"]["file"] or "anon", f["vma"]["ops"] or "-") for f in doc["findings"]}


def toml(entries: List[Dict[str, str]]) -> str:
    out = []
    for e in entries:
        out.append("[[suppress]]")
        out += [f"{key} = {json.dumps(value)}" for key, value in e.items()]
        out.append("")
    return "\n".join(out)


def test_baseline_suppresses_known_findings(guest, tmp_path) -> None:
    code, out, err = audit(guest, "--json")
    assert code == 1, err  # --fail-on info: the info findings fail it
    before = json.loads(out)
    found = kinds_found(before)
    assert any(rule == "mixedmap-all-struct-pages" for rule, _, _ in found), found

    every = [{"rule": r, "file": f, "ops": o, "reason": "known on this kernel"} for r, f, o in sorted(found)]
    (tmp_path / "all.toml").write_text(toml(every))
    code, out, err = audit(guest, "--json", "--baseline", str(tmp_path / "all.toml"))
    assert code == 0, err
    doc = json.loads(out)
    check_audit_json(doc)
    assert doc["findings"] and all(f["suppressed"] == "known on this kernel" for f in doc["findings"])
    assert doc["summary"]["suppressed"] == len(doc["findings"])

    code, out, err = audit(guest, "--format", "ktap", "--baseline", str(tmp_path / "all.toml"))
    assert code == 0, err
    test = parse_ktap(out)
    assert test.status.name != "FAILURE" and test.counts.failed == 0
    assert all(subs and set(subs) == {"SKIPPED"} for status, subs in rule_results(test).values() if subs)

    # Leave one (rule, kind) out: exactly its findings count again.
    left_out = every[0]
    (tmp_path / "some.json").write_text(json.dumps({"suppress": every[1:]}))
    code, out, err = audit(guest, "--json", "--baseline", str(tmp_path / "some.json"))
    assert code == 1, err
    doc = json.loads(out)
    counted = {(f["rule"], f["vma"]["file"] or "anon", f["vma"]["ops"] or "-") for f in doc["findings"] if f["suppressed"] is None}
    assert counted == {(left_out["rule"], left_out["file"], left_out["ops"])}
