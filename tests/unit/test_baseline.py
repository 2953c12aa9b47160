# SPDX-License-Identifier: GPL-2.0-or-later
"""
``audit --baseline FILE``: the suppression file (TOML and JSON), matching by
rule and mapping kind (never address or PID), and suppressed findings in
every format — text, JSON (the shipped schema), KTAP read by the kernel's
own parser, JUnit against its XSD — without counting for the exit code.
"""

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from report_checkers import check_audit_json, junit_schema, parse_ktap, rule_results

from drgn_p2p.baseline import Suppression, finding_kind, load_baseline, parse_baseline, suppress
from drgn_p2p.cli import cli
from drgn_p2p.errors import UsageError
from drgn_p2p.formats import audit_junit, audit_ktap, audit_text
from drgn_p2p.records import Severity
from drgn_p2p.report import audit_json

from .layouts import L72
from .test_formats import audit_of, bar_error, counts, p2pmem_info

TOML = """
# known findings
[[suppress]]
rule = "mixedmap-all-struct-pages"
ops = "special_mapping_vmops"
reason = "the vDSO: reviewed"

[[suppress]]
rule = "no-memmap-not-special"
ops = "bar_vm_ops"
reason = "never matches: another driver"
"""


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_toml_and_json_read_the_same(tmp_path) -> None:
    from_toml = load_baseline(write(tmp_path, "b.toml", TOML))
    data = {"suppress": [{"rule": e.rule, "ops": e.ops, "reason": e.reason} for e in from_toml]}
    from_json = load_baseline(write(tmp_path, "b.json", json.dumps(data)))
    assert from_toml == from_json
    assert from_toml[0] == Suppression("mixedmap-all-struct-pages", "the vDSO: reviewed", ops="special_mapping_vmops")


@pytest.mark.parametrize("data, message", [
    ({"suppress": [{"rule": "pfnmap-not-special"}]}, "gives no reason"),
    ({"suppress": [{"rule": "pfnmap-not-special", "reason": "  "}]}, "gives no reason"),
    ({"suppress": [{"reason": "x"}]}, "names no rule"),
    ({"suppress": [{"rule": "no-such-rule", "reason": "x"}]}, "unknown rule 'no-such-rule'"),
    ({"suppress": [{"rule": "pfnmap-not-special", "reason": "x", "pid": "1"}]}, "unknown key 'pid'"),
    ({"suppress": [{"rule": "pfnmap-not-special", "reason": "x", "share": "both"}]}, "share must be"),
    ({"suppress": [{"rule": "pfnmap-not-special", "reason": 3}]}, "'reason' must be a string"),
    ({"suppress": ["pfnmap-not-special"]}, "is not a table"),
    ({"suppress": {}}, "a baseline is a list"),
    ({"rules": []}, "a baseline is a list"),
    ({"suppress": [], "other": 1}, "unknown key 'other'"),
])
def test_bad_entries(data, message) -> None:
    with pytest.raises(UsageError, match=message):
        parse_baseline(data, "b.toml")


def test_bad_files(tmp_path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load_baseline(str(tmp_path / "missing.toml"))
    with pytest.raises(UsageError, match="is not TOML"):
        load_baseline(write(tmp_path, "b.toml", "[[suppress]\nrule ="))
    with pytest.raises(UsageError, match="is not JSON"):
        load_baseline(write(tmp_path, "b.json", "{"))
    with pytest.raises(UsageError, match="is a directory"):
        load_baseline(str(tmp_path))


def test_matched_by_rule_and_kind_not_pid_or_address() -> None:
    found = p2pmem_info(L72, [10, 11]) + bar_error(L72)
    entries = (Suppression("mixedmap-all-struct-pages", "r", ops="-", share="shared", prot="rw-"),)
    hit = suppress(found, L72, entries)
    # Both processes' p2pmem-like mappings (other PIDs, other addresses), not the BAR.
    assert set(hit) == {id(found[0]), id(found[1])}
    assert finding_kind(found[0], L72) == finding_kind(found[1], L72)
    # Another rule, or another vm_ops, does not match.
    assert not suppress(found, L72, (Suppression("pfnmap-not-special", "r", ops="-"),))
    assert not suppress(found, L72, (Suppression("mixedmap-all-struct-pages", "r", ops="other_ops"),))
    # A key left out matches anything: the rule alone suppresses every finding of it.
    assert len(suppress(found, L72, (Suppression("no-memmap-not-special", "r"),))) == 1


def suppressed_result():
    """An error (the BAR) and three info findings; the BAR is suppressed."""
    found = bar_error(L72) + p2pmem_info(L72, [10, 11, 12])
    result = audit_of(L72, found)
    result.suppressed = suppress(found, L72, (Suppression("no-memmap-not-special", "out-of-tree driver, fixed in 2.3"),))
    return result


def test_suppressed_findings_do_not_count_but_are_reported() -> None:
    result = suppressed_result()
    assert result.worst() == Severity.INFO
    text = audit_text(result)
    assert "SUPPRESSED error no-memmap-not-special" in text and "suppressed: out-of-tree driver, fixed in 2.3" in text
    assert "(1 suppressed by the baseline)" in text
    doc = audit_json(result, L72)
    check_audit_json(doc)
    assert doc["summary"]["suppressed"] == 1 and doc["summary"]["findings"]["error"] == 1
    assert [f["suppressed"] for f in doc["findings"]] == ["out-of-tree driver, fixed in 2.3", None, None, None]


def test_ktap_suppressed_subtest_is_a_skip() -> None:
    result = suppressed_result()
    text = audit_ktap(result)
    assert "  ok 1 pid 1 " in text and "# SKIP suppressed: out-of-tree driver, fixed in 2.3" in text
    test = parse_ktap(text)
    results = rule_results(test)
    assert results["no-memmap-not-special"] == ("SUCCESS", ["SKIPPED"])
    assert test.status.name != "FAILURE"
    assert counts(test)[1] == 0  # nothing failed
    # Without the baseline the same audit fails.
    result.suppressed = {}
    assert parse_ktap(audit_ktap(result)).status.name == "FAILURE"


def test_junit_suppressed_is_not_a_failure() -> None:
    result = suppressed_result()
    text = audit_junit(result)
    junit_schema().validate(text)
    suite = ET.fromstring(text).find("testsuite")
    assert suite.get("failures") == "0"
    case = next(c for c in suite.findall("testcase") if c.get("name") == "no-memmap-not-special")
    assert not case.findall("failure")
    assert case.find("system-out").text.startswith("suppressed: out-of-tree driver, fixed in 2.3\nerror: ")


def test_cli_checks_the_baseline_before_the_target(tmp_path) -> None:
    bad = write(tmp_path, "b.toml", '[[suppress]]\nrule = "pfnmap-not-special"\n')
    result = CliRunner().invoke(cli, ["audit", "-c", str(tmp_path / "no-vmcore"), "--baseline", bad])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "gives no reason" in result.output


def test_entry_file_and_ops_are_read_as_kinds_are() -> None:
    (entry,) = parse_baseline({"suppress": [{"rule": "dax-leaf-bits", "file": "/tmp/qp-fsdax.RaB66U/held",
                                             "ops": "dummy_vm_ops.251", "reason": "r"}]}, "b.toml")
    assert (entry.file, entry.ops) == ("/tmp/qp-fsdax.XXXXXX/held", "dummy_vm_ops")


def test_lab_run_reads_the_baseline_before_booting(tmp_path, monkeypatch) -> None:
    from drgn_p2p.lab.cli import baseline_args

    good = write(tmp_path, "b.toml", TOML)
    monkeypatch.chdir(tmp_path)
    assert baseline_args(["--pid", "1", "--baseline", "b.toml"]) == ["--pid", "1", "--baseline", good]
    assert baseline_args(["--baseline=b.toml", "--json"]) == [f"--baseline={good}", "--json"]
    write(tmp_path, "bad.toml", '[[suppress]]\nrule = "pfnmap-not-special"\n')
    with pytest.raises(UsageError, match="gives no reason"):
        baseline_args(["--baseline", "bad.toml"])
    # The CLI: one line, exit 2, and no guest booted (no kernel is even looked up).
    result = CliRunner().invoke(cli, ["lab", "run", "--kernel", "no-such-kernel", "--baseline", "bad.toml"])
    assert result.exit_code == 2 and "gives no reason" in result.output and "no-such-kernel" not in result.output
