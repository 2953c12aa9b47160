# SPDX-License-Identifier: GPL-2.0-or-later
"""Rendering: the JSON document (schema drgn-p2p/audit/1) and the rich text."""

import io
import json

from rich.console import Console

from drgn_p2p.pipeline import AuditResult, VmaReport
from drgn_p2p.records import Finding, PageKind, Severity
from drgn_p2p.report import SCHEMA, audit_json, layout_json, print_audit, print_finding, print_layout
from drgn_p2p.rules import evaluate_run

from .layouts import leaf, make_layout, make_vma, run, vm

L72 = make_layout((7, 2))
L61 = make_layout((6, 1))


def _result(layout):
    """A BAR PTE without the special bit in a PFNMAP VMA: a real violation's records."""
    vma = make_vma(vm(layout, "READ", "WRITE", "SHARED", "PFNMAP", "IO"))
    bad = run(vma, leaf(va=vma.start, pfn=0xFD000, special=False), PageKind.NO_MEMMAP, count=16, owner="0000:00:03.0")
    findings = evaluate_run(bad, layout)
    assert findings, "the fixture must be a violation"
    report = VmaReport(
        vma=vma,
        pages_by_kind=(("no-memmap", 16),),
        entries_by_kind=(("present", 16),),
        leaves_by_level=(("pte", 16),),
        special=0,
        devmap=0,
        unreadable_tables=0,
        runs=(bad,),
    )
    result = AuditResult(layout=layout, findings=findings, vmas=[report])
    result.stats.processes, result.stats.vmas = 1, 1
    return result


def test_json_document_shape():
    result = _result(L72)
    doc = json.loads(json.dumps(audit_json(result, L72)))
    assert doc["schema"] == SCHEMA == "drgn-p2p/audit/1"
    assert set(doc) >= {"schema", "kernel", "layout", "summary", "vmas", "findings", "not_applicable", "faults"}
    assert doc["summary"]["findings"]["error"] == len([f for f in result.findings if f.severity == Severity.ERROR])
    vma = doc["vmas"][0]
    assert vma["flag_names"] == ["READ", "WRITE", "SHARED", "PFNMAP", "IO"]
    assert vma["runs"][0]["raw"] == hex(result.vmas[0].runs[0].first.raw)
    # A BAR PTE without the special bit in a VM_PFNMAP VMA is one defect, one finding.
    assert [f["rule"] for f in doc["findings"]] == ["no-memmap-not-special"]
    finding = doc["findings"][0]
    assert finding["page"]["kind"] == "no-memmap" and finding["page"]["owner"] == "0000:00:03.0"
    assert finding["level"] == "pte" and finding["count"] == 16
    assert "SPECIAL" not in finding["bits"] and "PRESENT" in finding["bits"]


def test_json_escapes_names_from_the_target():
    result = _result(L72)
    weird = result.vmas[0].vma.__class__(**{**result.vmas[0].vma.__dict__, "comm": 'a"b\n\x1b[31m', "file": "/tmp/x\"y"})
    result.vmas[0] = result.vmas[0].__class__(**{**result.vmas[0].__dict__, "vma": weird})
    text = json.dumps(audit_json(result, L72))
    back = json.loads(text)
    assert back["vmas"][0]["comm"] == 'a"b\n\x1b[31m'
    assert "\n" not in text.split('"comm": ')[1].split(",")[0]


def _render(func, *args) -> str:
    buf = io.StringIO()
    func(Console(file=buf, width=200, color_system=None), *args)
    return buf.getvalue()


def test_text_report_names_rule_range_and_bits():
    result = _result(L72)
    text = _render(print_audit, result, L72)
    f = result.findings[0]
    assert f.rule in text and f"{f.start:#x}-{f.end:#x}" in text
    assert "PRESENT" in text and "no-memmap (0000:00:03.0)" in text
    assert "[rd wr sh pf io]" in text  # the VMA's flags, not eaten as markup
    assert "1 processes, 1 VMAs" in text


def test_clean_report_says_so():
    result = AuditResult(layout=L61)
    assert "No findings." in _render(print_audit, result, L61)


def test_vma_finding_renders_without_a_leaf():
    vma = make_vma(vm(L72, "READ", "SHARED", "MIXEDMAP"))
    f = Finding("mixedmap-all-struct-pages", Severity.INFO, vma, vma.start, vma.end, 3, "msg")
    text = _render(print_finding, f, L72)
    assert "whole VMA" in text and "INFO" in text


def test_layout_rendering_lists_how_each_value_was_learned():
    doc = layout_json(L61)
    assert doc["layout"]["devmap_bit"] == 58
    text = _render(print_layout, L61)
    assert "devmap_bit" in text and "swap.max_swapfiles" in text


def test_vm_flag_mnemonics_name_every_bit():
    from drgn_p2p.report import vm_flag_mnemonics

    from .layouts import L72, vm

    # smaps mnemonics where smaps has one, the flag's name where it has none
    # (the protection-key bits), and the bit number for a bit without a name.
    flags = vm(L72, "READ", "PFNMAP", "PKEY_BIT0") | 1 << 55
    assert vm_flag_mnemonics(flags, L72) == "rd pf pkey_bit0 bit55"
