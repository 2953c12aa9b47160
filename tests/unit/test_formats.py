# SPDX-License-Identifier: GPL-2.0-or-later
"""The report formats from audit records: KTAP read by the kernel's own parser
(tools/testing/kunit/kunit_parser.py of the lab kernel's linux-source
package), JUnit XML validated against junit-10.xsd (from pytest's sdist), the
JSON against the JSON Schema the package ships, repeated info findings grouped;
and ``audit --format/-o`` and ``lab run --format`` through the real command
line with the pipeline faked."""

import dataclasses
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import List, Sequence

import pytest
from report_checkers import check_audit_json, junit_schema, parse_ktap, rule_results
from rich.console import Console

from drgn_p2p import cli as cli_mod
from drgn_p2p import pipeline
from drgn_p2p.coalesce import group_findings
from drgn_p2p.errors import UsageError
from drgn_p2p.formats import FORMATS, audit_junit, audit_ktap, check_format, render
from drgn_p2p.pipeline import AuditResult, VmaReport, select_rules
from drgn_p2p.records import EntryKind, Finding, Layout, Level, PageKind, Severity, Vma
from drgn_p2p.report import audit_json, print_audit
from drgn_p2p.rules import evaluate_run, evaluate_runs

from .layouts import L61, L72, leaf, run, vm
from .test_pipeline_faults import FakeProgram, fake_kernel  # noqa: F401  (a fixture)

#: A name read from the target that looks like KTAP and XML and carries control characters.
HOSTILE = "not ok 1 x # SKIP\n  KTAP version 1\x1b[2J<b>&\x01"


def _vma(layout: Layout, pid: int, comm: str, *flags: str, ops=None, start=0x7F00_0000_0000, end=0x7F00_0001_0000) -> Vma:
    return Vma(pid=pid, comm=comm, mm=0xFFFF_8880_0000_1000 + pid, address=0xFFFF_8880_0100_0000 + pid,
               start=start, end=end, flags=vm(layout, *flags), pgoff=0, file=None, ops=ops)


def _report(vma: Vma, kind: str, pages: int) -> VmaReport:
    return VmaReport(vma=vma, pages_by_kind=((kind, pages),), entries_by_kind=(("present", pages),),
                     leaves_by_level=(("pte", pages),), special=0, devmap=0, unreadable_tables=0)


def audit_of(layout: Layout, findings: Sequence[Finding], vmas: Sequence[Vma] = (), rules: Sequence[str] = ()) -> AuditResult:
    """The AuditResult the pipeline would return with these findings: the rules selected as it selects them."""
    active, skipped = select_rules(layout, rules)
    result = AuditResult(layout=layout, findings=list(findings), not_applicable=skipped, rules=[r.id for r in active])
    result.vmas = [_report(v, "ram", 2) for v in vmas]
    result.stats.processes = len({v.pid for v in vmas})
    result.stats.vmas = len(vmas)
    return result


def bar_error(layout: Layout, pid: int = 1, comm: str = "holder") -> List[Finding]:
    """A BAR PTE without the special bit in a PFNMAP VMA: one error."""
    vma = _vma(layout, pid, comm, "READ", "WRITE", "SHARED", "PFNMAP", "IO")
    found = evaluate_run(run(vma, leaf(va=vma.start, pfn=0xFD000), PageKind.NO_MEMMAP, count=16, owner="0000:00:03.0"), layout)
    assert [f.rule for f in found] == ["no-memmap-not-special"]
    return found


def p2pmem_info(layout: Layout, pids: Sequence[int]) -> List[Finding]:
    """A p2pmem-like VM_MIXEDMAP VMA of P2PDMA pages in each of *pids*: one info finding each."""
    found = []
    for pid in pids:
        vma = _vma(layout, pid, f"sh{pid}", "READ", "WRITE", "SHARED", "MAYREAD", "MAYWRITE", "MAYSHARE", "MIXEDMAP",
                   ops=None, start=0x7FFF_0000_0000 + (pid << 20), end=0x7FFF_0000_2000 + (pid << 20))
        found += list(evaluate_runs(vma, [run(vma, leaf(va=vma.start, pfn=0x1000 + pid), PageKind.P2PDMA, count=2)], layout))
    assert {f.rule for f in found} == {"mixedmap-all-struct-pages"} and len(found) == len(pids)
    return found


def counts(test) -> tuple:
    c = test.counts
    return c.passed, c.failed, c.skipped, c.crashed, c.errors


# --- KTAP, read by the kernel's parser ----------------------------------------


def test_ktap_with_findings() -> None:
    findings = bar_error(L72) + p2pmem_info(L72, [10, 11, 12])
    result = audit_of(L72, findings)
    test = parse_ktap(audit_ktap(result))
    # 16 rules run: 14 pass without a finding, the three info findings are
    # passing subtests (below --fail-on error), the BAR is one failure; the
    # two devmap rules are skipped on 7.x.
    assert counts(test) == (14 + 3, 1, 2, 0, 0)
    assert test.status.name == "FAILURE"
    results = rule_results(test)
    assert list(results) == [r for r in _catalogue() if r in result.rules or r in result.not_applicable]
    assert results["no-memmap-not-special"] == ("FAILURE", ["FAILURE"])
    assert results["mixedmap-all-struct-pages"] == ("SUCCESS", ["SUCCESS"] * 3)
    assert results["devmap-not-dax"] == ("SKIPPED", [])
    assert results["pfnmap-not-special"] == ("SUCCESS", [])


def test_ktap_evidence_is_diagnostic_lines_of_its_subtest() -> None:
    result = audit_of(L72, bar_error(L72))
    text = audit_ktap(result)
    test = parse_ktap(text)
    bar = next(t for t in test.subtests if t.name == "no-memmap-not-special")
    (sub,) = bar.subtests
    log = "\n".join(sub.log)
    assert "# error: PTE maps a PFN without struct page (0000:00:03.0)" in log
    assert "# raw: 0x8000000000001067" in log and "# bits: PRESENT" in log and "# owner: 0000:00:03.0" in log
    assert "# vm_flags: READ|WRITE|SHARED|PFNMAP|IO" in log
    assert sub.name == f"pid 1 {0x7F00_0000_0000:#x}-{0x7F00_0001_0000:#x}"
    lines = text.splitlines()
    assert lines[0] == "KTAP version 1" and lines[lines.index("  KTAP version 1") + 1] == "  # Subtest: no-memmap-not-special"


def test_ktap_without_findings() -> None:
    result = audit_of(L72, [])
    test = parse_ktap(audit_ktap(result))
    assert counts(test) == (16, 0, 2, 0, 0)
    assert test.status.name == "SUCCESS"
    # Catalogue order, every rule once: the ones run and the ones that cannot apply.
    assert [t.name for t in test.subtests] == [r for r in _catalogue() if r in result.rules or r in result.not_applicable]


def test_ktap_not_applicable_rules_skip_with_their_reason() -> None:
    result = audit_of(L61, [])
    test = parse_ktap(audit_ktap(result))
    assert counts(test) == (16, 0, 2, 0, 0)
    skipped = {t.name: t.skip_reason for t in test.subtests if t.status.name == "SKIPPED"}
    assert skipped == result.not_applicable
    assert "CONFIG_DEVICE_PRIVATE" in skipped["device-private-entry-target"]


def test_ktap_selected_rules_only() -> None:
    # --rule selects: one rule that runs, one that cannot apply to 6.1.
    result = audit_of(L61, [], rules=["pfnmap-not-special", "device-exclusive-target"])
    test = parse_ktap(audit_ktap(result))
    assert rule_results(test) == {"pfnmap-not-special": ("SUCCESS", []), "device-exclusive-target": ("SKIPPED", [])}
    assert counts(test) == (1, 0, 1, 0, 0)


def test_ktap_fail_on_sets_which_findings_fail() -> None:
    result = audit_of(L72, bar_error(L72) + p2pmem_info(L72, [10, 11]))
    assert counts(parse_ktap(audit_ktap(result, Severity.INFO))) == (14, 3, 2, 0, 0)
    # Nothing fails below the threshold: the error is still a subtest, with its evidence.
    result = audit_of(L72, p2pmem_info(L72, [10]))
    test = parse_ktap(audit_ktap(result, Severity.ERROR))
    assert test.status.name == "SUCCESS" and counts(test) == (16, 0, 2, 0, 0)


def test_ktap_hostile_names_stay_diagnostics() -> None:
    found = bar_error(L72, comm=HOSTILE)
    result = audit_of(L72, found)
    result.faults.append((found[0].vma, pipeline.TableFault(Level.PTE, 0x7F00_0000_0000, 0x1000, "bad\nnot ok 9 x")))
    text = audit_ktap(result)
    assert "\x1b" not in text and "\x01" not in text
    test = parse_ktap(text)
    assert counts(test) == (15, 1, 2, 0, 0)
    (sub,) = next(t for t in test.subtests if t.name == "no-memmap-not-special").subtests
    assert any("not ok 1 x # SKIP\\n  KTAP version 1\\x1b[2J" in line for line in sub.log)


# --- JUnit XML, validated against junit-10.xsd ---------------------------------


def _junit(result, fail_on=Severity.ERROR) -> ET.Element:
    text = audit_junit(result, fail_on)
    junit_schema().validate(text)
    return ET.fromstring(text)


def test_junit_with_findings() -> None:
    result = audit_of(L72, bar_error(L72) + p2pmem_info(L72, [10, 11]))
    root = _junit(result)
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("18", "1", "0", "2")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == [r for r in _catalogue() if r in cases]
    (failure,) = cases["no-memmap-not-special"].findall("failure")
    assert failure.get("type") == "error" and failure.get("message").startswith("1 finding: PTE maps a PFN")
    assert "owner: 0000:00:03.0" in failure.text and "raw: 0x8000000000001067" in failure.text
    info = cases["mixedmap-all-struct-pages"]
    assert not info.findall("failure") and info.find("system-out").text.count("info: VM_MIXEDMAP") == 2
    assert cases["devmap-not-dax"].find("skipped").get("message") == result.not_applicable["devmap-not-dax"]
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["kernel.release"] == "7.2.0-test" and props["fail_on"] == "error"


def test_junit_without_findings_and_not_applicable() -> None:
    result = audit_of(L61, [])
    suite = _junit(result).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("18", "0", "2")
    skipped = {c.get("name"): c.find("skipped").get("message") for c in suite if c.find("skipped") is not None}
    assert skipped == result.not_applicable


def test_junit_fail_on_info_and_hostile_names() -> None:
    found = bar_error(L72, comm=HOSTILE) + p2pmem_info(L72, [10])
    result = audit_of(L72, found)
    result.faults.append((None, pipeline.TableFault(None, 0, 0, "pgmap_array\x00 unreadable")))  # type: ignore[arg-type]
    suite = _junit(result, Severity.INFO).find("testsuite")
    assert suite.get("failures") == "2"
    assert "pgmap_array\\x00 unreadable" in suite.find("system-err").text
    failure = next(c for c in suite if c.get("name") == "no-memmap-not-special").find("failure")
    assert "pid 1 (not ok 1 x # SKIP\\n  KTAP version 1\\x1b[2J<b>&\\x01)" in failure.text


# --- JSON, validated against the schema the package ships -----------------------


def test_json_documents_validate() -> None:
    for result in (audit_of(L72, bar_error(L72) + p2pmem_info(L72, [10, 11])), audit_of(L72, []), audit_of(L61, [])):
        doc = json.loads(render(result, "json"))
        check_audit_json(doc)
        assert doc["rules"] == result.rules


def test_json_schema_rejects_what_is_not_the_document() -> None:
    import jsonschema

    doc = json.loads(render(audit_of(L72, bar_error(L72)), "json"))
    for broken in (
        {**doc, "schema": "drgn-p2p/audit/2"},
        {k: v for k, v in doc.items() if k != "findings"},
        {**doc, "findings": [{**doc["findings"][0], "start": 12345}]},
        {**doc, "findings": [{**doc["findings"][0], "severity": "fatal"}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            check_audit_json(broken)


def test_json_schema_names_every_kind_the_code_has() -> None:
    from report_checkers import audit_schema

    defs = audit_schema()["$defs"]
    assert defs["page_kind"]["enum"] == [k.value for k in PageKind]
    assert defs["entry_kind"]["enum"] == [k.value for k in EntryKind]
    assert set(defs["level"]["enum"]) == {lv.label for lv in Level}
    assert defs["severity"]["enum"] == [s.label for s in sorted(Severity, reverse=True)]


def test_json_groups_repeated_info_findings() -> None:
    findings = bar_error(L72) + p2pmem_info(L72, [10, 11, 12])
    doc = audit_json(audit_of(L72, findings), L72)
    check_audit_json(doc)
    assert len(doc["findings"]) == 4  # JSON keeps every finding
    groups = {g["rule"]: g for g in doc["groups"]}
    assert groups["mixedmap-all-struct-pages"]["processes"] == 3
    assert groups["mixedmap-all-struct-pages"]["pids"] == [10, 11, 12]
    assert [doc["findings"][i]["pid"] for i in groups["mixedmap-all-struct-pages"]["findings"]] == [10, 11, 12]
    assert groups["no-memmap-not-special"]["findings"] == [0]


# --- grouping and the text report ----------------------------------------------


def test_group_findings() -> None:
    info = p2pmem_info(L72, [10, 11, 12])
    errors = bar_error(L72, pid=1) + bar_error(L72, pid=2)
    groups = group_findings(errors + info)
    # Errors keep their addresses: never grouped, even when every process has one.
    assert [len(g.findings) for g in groups] == [1, 1, 3]
    assert groups[2].pids == (10, 11, 12)
    # The same info finding twice in one process is not "every process".
    same_pid = [dataclasses.replace(f, vma=dataclasses.replace(f.vma, pid=10)) for f in info[:2]]
    assert [len(g.findings) for g in group_findings(same_pid)] == [1, 1]
    # Another kind of VMA (other vm_ops) is another group.
    other = dataclasses.replace(info[2], vma=dataclasses.replace(info[2].vma, ops="other_vm_ops"))
    assert [len(g.findings) for g in group_findings(info[:2] + [other])] == [2, 1]


def test_text_report_prints_a_repeated_info_finding_once() -> None:
    result = audit_of(L72, bar_error(L72) + p2pmem_info(L72, range(10, 30)))
    buf = io.StringIO()
    print_audit(Console(file=buf, width=200, color_system=None), result, L72)
    text = buf.getvalue()
    assert text.count("mixedmap-all-struct-pages") == 1
    assert "the same in 20 processes (20 findings), also pid 11 (sh11), 12 (sh12)" in text and "… 11 more" in text
    assert text.count("no-memmap-not-special") == 1
    assert "1 errors, 0 warnings, 20 info" in text


# --- the command line ------------------------------------------------------------


def _catalogue() -> List[str]:
    from drgn_p2p.rules import RULES

    return [r.id for r in RULES]


def test_check_format() -> None:
    assert [check_format(f) for f in FORMATS] == list(FORMATS)
    with pytest.raises(UsageError, match=r"unknown format 'xml' \(one of: text, json, ktap, junit, html\)"):
        check_format("xml")


@pytest.fixture
def fake_audit(monkeypatch: pytest.MonkeyPatch):
    """``drgn-p2p audit`` without a kernel: the target opens to nothing, the audit returns a BAR error."""
    from drgn_p2p import target

    monkeypatch.setattr(target, "open_program", lambda **kwargs: object())
    monkeypatch.setattr(pipeline, "audit", lambda prog, **kwargs: audit_of(L72, bar_error(L72), [_vma(L72, 1, "holder")]))


def _run(args: List[str], capsys) -> tuple:
    with pytest.raises(SystemExit) as exit_:
        cli_mod.cli.main(args=args, prog_name="drgn-p2p", standalone_mode=False)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_cli_formats_to_stdout_and_file(fake_audit, capsys, tmp_path: Path) -> None:
    code, ktap, err = _run(["audit", "-c", "/x", "--format", "ktap"], capsys)
    assert (code, err) == (1, "")  # exit codes unchanged: an error finding is 1
    assert counts(parse_ktap(ktap)) == (15, 1, 2, 0, 0)
    code, _, _ = _run(["audit", "-c", "/x", "--format", "ktap", "--fail-on", "info"], capsys)
    assert code == 1
    out = tmp_path / "audit.xml"
    code, stdout, _ = _run(["audit", "-c", "/x", "--format", "junit", "-o", str(out)], capsys)
    assert (code, stdout) == (1, "")
    junit_schema().validate(str(out))
    code, as_json, _ = _run(["audit", "-c", "/x", "--json"], capsys)
    code2, as_format, _ = _run(["audit", "-c", "/x", "--format", "json"], capsys)
    assert code == code2 == 1
    a, b = json.loads(as_json), json.loads(as_format)
    check_audit_json(a)
    assert a == b
    text_file = tmp_path / "audit.txt"
    _run(["audit", "-c", "/x", "-o", str(text_file)], capsys)
    text = text_file.read_text()
    assert "no-memmap-not-special" in text and "\x1b" not in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "xml"], "error: unknown format 'xml' (one of: text, json, ktap, junit, html)"),
        (["--json", "--format", "ktap"], "error: --json is --format json: give one of --json and --format ktap"),
        (["-o", "/nonexistent/dir/out.xml"], "error: cannot write /nonexistent/dir/out.xml: no directory /nonexistent/dir"),
        (["-o", "/"], "error: cannot write /: it is a directory"),
    ],
)
def test_cli_bad_format_or_output_is_one_error_line(fake_audit, capsys, args, message) -> None:
    code, out, err = _run(["audit", "-c", "/x", *args], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [message]


def test_lab_run_forwards_format_and_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from drgn_p2p.lab import cli as lab_cli

    class Guest:
        failed: dict = {}

        def close(self) -> None:
            pass

    forwarded = []
    monkeypatch.setattr(lab_cli, "_boot", lambda *args: Guest())

    def audit_streams(guest, via, args, dump_dir):
        forwarded.append((via, list(args)))
        return 0, "", ""

    monkeypatch.setattr(lab_cli, "audit_streams", audit_streams)
    out = str(tmp_path / "a.xml")
    result = CliRunner().invoke(cli_mod.cli, ["lab", "run", "--via", "qemu", "--format", "junit", "-o", out])
    assert result.exit_code == 0, result.output
    assert forwarded == [("qemu", ["--format", "junit", "-o", out])]


def test_formats_of_a_real_pipeline_run_with_faults(fake_kernel) -> None:
    """The pipeline's own result (a cut task list, an exited process, an unreadable table, a hostile comm)."""
    result = pipeline.audit(FakeProgram())
    assert result.rules == [r for r in _catalogue() if r not in result.not_applicable]
    test = parse_ktap(audit_ktap(result))
    assert counts(test) == (16, 0, 2, 0, 0)
    assert sum("unreadable:" in line for line in test.log) == len(result.faults) == 4
    junit_schema().validate(audit_junit(result))
    check_audit_json(json.loads(render(result, "json")))


def test_lab_run_knows_every_way_to_ask_for_json() -> None:
    from drgn_p2p.lab.cli import _wants_json

    assert _wants_json(["--json"]) and _wants_json(["--format", "json"]) and _wants_json(["--pid", "1", "--format=json"])
    assert not _wants_json(["--format", "ktap"]) and not _wants_json(["--comm", "json"]) and not _wants_json([])
