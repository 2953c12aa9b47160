# SPDX-License-Identifier: GPL-2.0-or-later
"""
Formats
-------

The audit's records (:class:`~drgn_p2p.pipeline.AuditResult`) as the
documents ``drgn-p2p audit --format`` writes:

* ``text``: the rich report of :func:`drgn_p2p.report.print_audit`;
* ``json``: :func:`drgn_p2p.report.audit_json` (schema ``drgn-p2p/audit/1``,
  described by ``drgn_p2p/schema/audit-1.json``);
* ``ktap``: KTAP version 1 (the kernel's ``Documentation/dev-tools/ktap.rst``),
  a test per rule, a subtest per finding, ``# SKIP`` with the reason for rules
  that cannot apply to the kernel, the evidence as diagnostic lines;
* ``junit``: JUnit XML, one testsuite with a testcase per rule, a
  ``<failure>`` carrying its findings, ``<skipped>`` its reason;
* ``html``: one self-contained page, the findings and a strip of each
  process's address space (:mod:`drgn_p2p.htmlpage`).

A finding fails its test when it is at least as severe as *fail_on* (the
``--fail-on`` that also sets the exit code); a less severe one is a passing
subtest (KTAP) or ``<system-out>`` (JUnit) that still carries its evidence.
A finding a baseline suppresses (``AuditResult.suppressed``) never fails: in
KTAP it is ``ok N … # SKIP suppressed: <reason>``, in JUnit ``<system-out>``
led by ``suppressed: <reason>``.
Every function returns text and prints nothing.
"""

import io
import json
import xml.etree.ElementTree as ET
from typing import Dict, List, Sequence

from rich.console import Console

from .errors import UsageError
from .records import Finding, Severity
from .report import audit_json, print_audit, printable, summary_text, vm_flag_mnemonics
from .rules import RULES, rule_by_id

__all__ = ("FORMATS", "check_format", "finding_lines", "audit_ktap", "audit_junit", "audit_text", "render")

#: The names ``--format`` accepts; the first is the default.
FORMATS = ("text", "json", "ktap", "junit", "html")


def check_format(name: str) -> str:
    """*name* if it is one of :data:`FORMATS`.

    :raises UsageError: naming the formats there are.
    """
    if name not in FORMATS:
        raise UsageError(f"unknown format {name!r} (one of: {', '.join(FORMATS)})")
    return name


def _reported_rules(result) -> List[str]:
    """The rules run and the rules that cannot apply, in catalogue order."""
    wanted = set(result.rules) | set(result.not_applicable)
    return [r.id for r in RULES if r.id in wanted]


def _by_rule(findings: Sequence[Finding]) -> Dict[str, List[Finding]]:
    found: Dict[str, List[Finding]] = {}
    for f in findings:
        found.setdefault(f.rule, []).append(f)
    return found


def finding_lines(f: Finding, layout) -> List[str]:
    """One finding as plain lines: verdict, where, the VMA, the page, the evidence."""
    what = f"{f.count} {f.first.level.label} leaves" if f.first else "whole VMA"
    vma = f.vma
    lines = [
        f"{f.severity.label}: {printable(f.message)}",
        f"pid {vma.pid} ({printable(vma.comm)}) {f.start:#x}-{f.end:#x} ({what})",
        f"vma {vma.start:#x}-{vma.end:#x} [{vm_flag_mnemonics(vma.flags, layout)}]"
        f" {printable(vma.ops or vma.file or 'anon')}",
    ]
    if f.page is not None:
        owner = f" ({printable(f.page.owner)})" if f.page.owner else ""
        lines.append(f"page: {f.page.kind.value}{owner}")
    lines.extend(f"{key}: {printable(value)}" for key, value in f.evidence)
    return lines


def _suppressed_lines(result, f: Finding) -> List[str]:
    reason = result.suppression(f)
    return [] if reason is None else [f"suppressed: {printable(reason)}"]


def _fault_lines(result) -> List[str]:
    lines = []
    for vma, fault in result.faults:
        where = f"pid {vma.pid} {fault.level.label} table at {fault.va:#x}: " if vma is not None else ""
        lines.append(f"unreadable: {where}{printable(fault.message)}")
    return lines


def audit_ktap(result, fail_on: Severity = Severity.ERROR) -> str:
    """The audit as KTAP version 1: a test per rule, a subtest per finding."""
    layout = result.layout
    found = _by_rule(result.findings)
    rules = _reported_rules(result)
    out = [
        "KTAP version 1",
        f"# drgn-p2p audit of {printable(layout.release)} ({layout.arch}), failing on {fail_on.label}",
        f"# {summary_text(result)}",
        *(f"# {line}" for line in _fault_lines(result)),
        f"1..{len(rules)}",
    ]
    for number, rule_id in enumerate(rules, 1):
        reason = result.not_applicable.get(rule_id)
        if reason is not None:
            out += [f"# {rule_by_id(rule_id).title}", f"ok {number} {rule_id} # SKIP {printable(reason)}"]
            continue
        findings = found.get(rule_id, [])
        if not findings:
            out += [f"# {rule_by_id(rule_id).title}", f"ok {number} {rule_id}"]
            continue
        out += ["  KTAP version 1", f"  # Subtest: {rule_id}", f"  # {rule_by_id(rule_id).title}", f"  1..{len(findings)}"]
        for sub, f in enumerate(findings, 1):
            out += [f"  # {line}" for line in finding_lines(f, layout)]
            reason = result.suppression(f)
            if reason is not None:
                out.append(f"  ok {sub} pid {f.vma.pid} {f.start:#x}-{f.end:#x} # SKIP suppressed: {printable(reason)}")
                continue
            verdict = "not ok" if f.severity >= fail_on else "ok"
            out.append(f"  {verdict} {sub} pid {f.vma.pid} {f.start:#x}-{f.end:#x}")
        failed = any(_fails(result, f, fail_on) for f in findings)
        out.append(f"{'not ok' if failed else 'ok'} {number} {rule_id}")
    return "\n".join(out) + "\n"


def _fails(result, f: Finding, fail_on: Severity) -> bool:
    """Whether *f* fails its test: at least as severe as *fail_on*, and not suppressed."""
    return f.severity >= fail_on and result.suppression(f) is None


def audit_junit(result, fail_on: Severity = Severity.ERROR) -> str:
    """The audit as JUnit XML: one testsuite, a testcase per rule."""
    layout = result.layout
    found = _by_rule(result.findings)
    rules = _reported_rules(result)
    failures = sum(
        1 for r in rules if r not in result.not_applicable and any(_fails(result, f, fail_on) for f in found.get(r, []))
    )
    counts = {
        "tests": str(len(rules)),
        "failures": str(failures),
        "errors": "0",
        "time": f"{result.stats.seconds:.3f}",
    }
    root = ET.Element("testsuites", name="drgn-p2p audit", **counts)
    suite = ET.SubElement(
        root, "testsuite", name=f"drgn-p2p audit {printable(layout.release)}",
        skipped=str(len(result.not_applicable)), **counts,
    )
    props = ET.SubElement(suite, "properties")
    s = result.stats
    for name, value in (
        ("kernel.release", printable(layout.release)), ("kernel.arch", layout.arch), ("fail_on", fail_on.label),
        ("processes", s.processes), ("vmas", s.vmas), ("tables_read", s.tables_read),
        ("unreadable_tables", s.table_faults), ("unreadable_processes", s.process_faults),
        ("unreadable_pgmaps", s.pgmap_faults), ("withdrawn", s.withdrawn),
    ):
        ET.SubElement(props, "property", name=name, value=str(value))
    for rule_id in rules:
        case = ET.SubElement(suite, "testcase", name=rule_id, classname="drgn-p2p.rules")
        reason = result.not_applicable.get(rule_id)
        if reason is not None:
            ET.SubElement(case, "skipped", message=printable(reason))
            continue
        findings = found.get(rule_id, [])
        failing = [f for f in findings if _fails(result, f, fail_on)]
        passing = [f for f in findings if not _fails(result, f, fail_on)]
        if failing:
            worst = max(f.severity for f in failing)
            failure = ET.SubElement(
                case, "failure", type=worst.label,
                message=f"{len(failing)} finding{'s' if len(failing) > 1 else ''}: {printable(failing[0].message)}",
            )
            failure.text = "\n\n".join("\n".join(finding_lines(f, layout)) for f in failing) + "\n"
        if passing:
            out = ET.SubElement(case, "system-out")
            out.text = "\n\n".join("\n".join(_suppressed_lines(result, f) + finding_lines(f, layout)) for f in passing) + "\n"
    faults = _fault_lines(result)
    if faults:
        ET.SubElement(suite, "system-err").text = "\n".join(faults) + "\n"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def audit_text(result, verbose: bool = False, width: int = 160) -> str:
    """The rich text report, without colour, as a string (for ``-o FILE``)."""
    buf = io.StringIO()
    print_audit(Console(file=buf, width=width, color_system=None, highlight=False), result, result.layout, verbose)
    return buf.getvalue()


def render(result, fmt: str, fail_on: Severity = Severity.ERROR, verbose: bool = False) -> str:
    """The audit in format *fmt* (one of :data:`FORMATS`), ending with a newline."""
    check_format(fmt)
    if fmt == "json":
        return json.dumps(audit_json(result, result.layout), indent=1) + "\n"
    if fmt == "ktap":
        return audit_ktap(result, fail_on)
    if fmt == "junit":
        return audit_junit(result, fail_on)
    if fmt == "html":
        from .htmlpage import audit_html

        return audit_html(result, fail_on)
    return audit_text(result, verbose)
