# SPDX-License-Identifier: GPL-2.0-or-later
"""
Rule proofs
-----------

The record of a proof run (``tests/lab/test_proofs.py``): on each lab kernel,
which rules of the catalogue were seen to fire on a real page table that the
test module ``p2p_violate`` broke on purpose, which were seen silent on
legitimate mappings of their kind, and which cannot apply there, and why.

The run writes one JSON document (schema :data:`SCHEMA`, one entry per
kernel under ``"kernels"``); :func:`kernel_record` builds a kernel's entry
from the audit's records, :func:`matrix` reduces a document to the rule ×
kernel table, and :func:`render_markdown` / :func:`render_terminal` print
it (``scripts/proof-matrix`` writes ``docs/proof-matrix.md``;
``drgn-p2p rules --proof FILE`` prints it).

A rule's status on one kernel:

``fired``
    A violation case listing the rule in its ``trips`` was held, and the
    audit reported exactly those rules there, each with its catalogue
    severity, for the holder's PID, over exactly the case's mapping.
``silent``
    No wrong entry for the rule can be held safely in the lab
    (:data:`NOT_PROVABLE` says why), but legitimate mappings of its kind were
    held and the rule stayed silent on them.
``n/a``
    The rule cannot apply to the kernel (``Rule.applies``), or the kernel
    cannot express any case for it (the module's skip and its reason).
``failed``
    Anything else: a case that did not trip exactly its rules, a control
    that drew a finding, a rule with neither a case nor a reason.
"""

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..records import Finding, Severity
from ..rules import RULES

__all__ = (
    "SCHEMA",
    "KERNEL_ORDER",
    "CONTROL_DOMAINS",
    "NOT_PROVABLE",
    "Control",
    "CaseSpec",
    "case_record",
    "kernel_record",
    "catalogue",
    "merge",
    "merge_kernels",
    "load",
    "write",
    "matrix",
    "render_markdown",
    "render_terminal",
    "render_main",
)

SCHEMA = "drgn-p2p/proof/1"

#: Display order of the lab kernels.
KERNEL_ORDER = ("6.1", "6.12", "newest")

#: Legitimate mappings the run holds, and the rules each one exercises: a rule
#: listed here must stay silent on that mapping. Module controls and the
#: test_hmm device-exclusive entries by case name; the lab's clean scenarios
#: as ``scenario:<name>``. (The merged P2PDMA mmap draws the info-level
#: ``mixedmap-all-struct-pages`` by design, so that rule is not listed for it.)
CONTROL_DOMAINS: Mapping[str, Tuple[str, ...]] = {
    "control-remap": ("no-memmap-not-special", "no-memmap-outside-pfnmap", "special-outside-pfnmap"),
    "control-fault-pfn": ("pfnmap-not-special", "special-outside-pfnmap", "no-memmap-not-special"),
    "control-huge-pfn": ("huge-pfn-not-special", "pfnmap-not-special", "no-memmap-outside-pfnmap"),
    "hmm-exclusive": ("device-exclusive-target", "garbage-entry"),
    "scenario:anon": ("special-outside-pfnmap", "devmap-not-dax", "devmap-pte-not-special"),
    "scenario:thp": ("huge-pfn-not-special", "special-outside-pfnmap", "devmap-not-dax"),
    "scenario:zero-page": ("special-outside-pfnmap",),
    "scenario:protnone": ("garbage-entry", "special-outside-pfnmap"),
    "scenario:swap": ("garbage-entry",),
    "scenario:fsdax": (
        "dax-leaf-bits", "dax-in-pfnmap", "devmap-not-dax", "devmap-pte-not-special", "special-outside-pfnmap",
    ),
    "scenario:devdax": ("dax-leaf-bits", "dax-in-pfnmap", "devmap-not-dax", "huge-pfn-not-special"),
    "scenario:pcibar": ("no-memmap-not-special", "no-memmap-outside-pfnmap", "pfnmap-not-special"),
    "scenario:vfio-huge": ("huge-pfn-not-special", "no-memmap-outside-pfnmap"),
    "scenario:p2pdma": ("p2pdma-leaf", "p2pdma-vma-flags", "devmap-not-dax"),
    "scenario:drm-ttm": ("pfnmap-not-special", "no-memmap-not-special", "huge-pfn-not-special"),
    "scenario:device-private": ("device-private-entry-target", "device-private-present"),
    "scenario:device-coherent": ("device-coherent-mapping", "device-exclusive-target", "special-outside-pfnmap"),
    # The zoo (drgn_p2p.lab.zoo): mappings made by the kernel's own code paths.
    "scenario:p2pdma-ro": ("p2pdma-leaf", "p2pdma-vma-flags", "devmap-not-dax"),
    "scenario:perf-ring": ("pfnmap-not-special", "special-outside-pfnmap"),
    "scenario:packet-ring": ("special-outside-pfnmap", "devmap-not-dax"),
    "scenario:io-uring": ("special-outside-pfnmap", "devmap-not-dax"),
    "scenario:io-uring-pbuf": ("special-outside-pfnmap", "devmap-not-dax"),
    "scenario:tcp-zc": ("special-outside-pfnmap", "devmap-not-dax"),
    "scenario:hugetlb": ("huge-pfn-not-special", "special-outside-pfnmap", "devmap-not-dax"),
    "scenario:hugetlb-1g": ("huge-pfn-not-special", "special-outside-pfnmap", "devmap-not-dax"),
    "scenario:shmem-thp": ("huge-pfn-not-special", "special-outside-pfnmap", "devmap-not-dax"),
    "scenario:ksm": ("special-outside-pfnmap",),
    "scenario:secretmem": ("special-outside-pfnmap",),
    "scenario:uffd-wp": ("garbage-entry", "special-outside-pfnmap"),
    "scenario:guard": ("garbage-entry",),
    "scenario:guard-shmem": ("garbage-entry",),
    "scenario:hwpoison": ("garbage-entry",),
    "scenario:numa-hint": ("garbage-entry", "special-outside-pfnmap"),
    "scenario:zswap": ("garbage-entry",),
    "scenario:pcibar-wc": ("no-memmap-not-special", "no-memmap-outside-pfnmap", "pfnmap-not-special"),
    "scenario:uio": ("no-memmap-not-special", "no-memmap-outside-pfnmap", "pfnmap-not-special"),
    "scenario:udmabuf": ("pfnmap-not-special", "special-outside-pfnmap"),
    "scenario:drm-vgem": ("pfnmap-not-special", "special-outside-pfnmap"),
    "scenario:drm-virtio-gpu": ("pfnmap-not-special", "special-outside-pfnmap"),
    "scenario:devmem": ("pfnmap-not-special", "no-memmap-not-special"),
    "scenario:dma-heap": ("pfnmap-not-special", "no-memmap-not-special"),
    "scenario:vdso": ("pfnmap-not-special", "special-outside-pfnmap"),
    "scenario:fbdev": ("special-outside-pfnmap", "no-memmap-outside-pfnmap"),
}

#: Rules for which no wrong entry is created in the lab, and why (rule id ->
#: reason); such a rule is "silent" where legitimate mappings of its kind
#: (:data:`CONTROL_DOMAINS`) were held and it stayed silent on them. Empty:
#: p2p_violate holds a wrong entry for every rule.
NOT_PROVABLE: Mapping[str, str] = {}


class Control:
    """A legitimate mapping held during the run: ``name`` (a key of :data:`CONTROL_DOMAINS`), PID and range."""

    __slots__ = ("name", "pid", "start", "end")

    def __init__(self, name: str, pid: int, start: int, end: int) -> None:
        self.name, self.pid, self.start, self.end = name, pid, start, end


class CaseSpec:
    """What a case must draw: its name, the rule ids it trips (empty: a control) and what it is."""

    __slots__ = ("name", "trips", "what")

    def __init__(self, name: str, trips: Sequence[str], what: str = "") -> None:
        self.name, self.trips, self.what = name, tuple(trips), what


def _hex(value: int) -> str:
    return f"{value:#x}"


def _finding_dict(f: Finding) -> Dict[str, Any]:
    return {
        "rule": f.rule,
        "severity": f.severity.label,
        "start": _hex(f.start),
        "end": _hex(f.end),
        "count": f.count,
        "level": f.first.level.label if f.first else None,
        "raw": _hex(f.first.raw) if f.first else None,
        "page_kind": f.page.kind.value if f.page else None,
    }


def _overlaps(f: Finding, pid: int, start: int, end: int) -> bool:
    return f.vma.pid == pid and f.start < end and f.end > start


def _covers_exactly(findings: Iterable[Finding], start: int, end: int) -> bool:
    """Whether the findings' ranges, together, are exactly [start, end)."""
    spans = sorted((f.start, f.end) for f in findings)
    if not spans or spans[0][0] != start:
        return False
    reach = start
    for s, e in spans:
        if s > reach:
            return False
        reach = max(reach, e)
    return reach == end


def case_record(
    spec: CaseSpec,
    pid: int,
    start: Optional[int],
    length: Optional[int],
    skip: Optional[str],
    findings: Sequence[Finding],
    expected_skip: Optional[str] = None,
) -> Dict[str, Any]:
    """
    Judge one case of the module (or the holder's ``hmm-exclusive``).

    *findings* are the audit's findings for the holder; those overlapping the
    case's mapping are the case's. A violation case is ``fired`` when the set
    of rules found there is exactly ``spec.trips``, each with its catalogue
    severity and the holder's PID, and each rule's findings lie within the
    mapping and cover all of it. A control is ``silent`` when nothing at
    warning or error level was found there. A case the module skipped is
    ``skipped`` when *expected_skip* (why the kernel cannot express it) is
    given, else ``wrong``.
    """
    record: Dict[str, Any] = {
        "case": spec.name,
        "control": not spec.trips,
        "what": spec.what,
        "trips": list(spec.trips),
        "held": skip is None,
        "skip": None,
        "pid": pid,
        "start": None,
        "end": None,
        "found": [],
        "verdict": "wrong",
        "problems": [],
    }
    problems: List[str] = record["problems"]
    if skip is not None:
        if expected_skip:
            record["verdict"] = "skipped"
            record["skip"] = f"{expected_skip} (module: {skip})"
        else:
            record["skip"] = skip
            problems.append(f"the module could not build it on a kernel that should express it: {skip}")
        return record
    assert start is not None and length is not None
    end = start + length
    record["start"], record["end"] = _hex(start), _hex(end)
    mine = [f for f in findings if _overlaps(f, pid, start, end)]
    record["found"] = [_finding_dict(f) for f in mine]
    if expected_skip:
        problems.append(f"held, but expected the kernel not to express it: {expected_skip}")
    if not spec.trips:
        loud = [f for f in mine if f.severity >= Severity.WARNING]
        problems.extend(f"control drew {f.rule} ({f.severity.label}) at {f.start:#x}-{f.end:#x}" for f in loud)
        if not problems:
            record["verdict"] = "silent"
        return record
    severities = {r.id: r.severity for r in RULES}
    found_ids = {f.rule for f in mine}
    for rule in spec.trips:
        if rule not in found_ids:
            problems.append(f"{rule} not reported")
    for rule in sorted(found_ids - set(spec.trips)):
        problems.append(f"unexpected {rule} reported")
    for f in mine:
        if f.rule in spec.trips and f.severity != severities.get(f.rule):
            problems.append(f"{f.rule} reported as {f.severity.label}, catalogue says {severities[f.rule].label}")
        if not (start <= f.start < f.end <= end):
            problems.append(f"{f.rule} at {f.start:#x}-{f.end:#x} reaches outside the mapping {start:#x}-{end:#x}")
    for rule in spec.trips:
        hits = [f for f in mine if f.rule == rule]
        if hits and not _covers_exactly(hits, start, end):
            spans = ", ".join(f"{f.start:#x}-{f.end:#x}" for f in hits)
            problems.append(f"{rule} covers {spans}, not all of {start:#x}-{end:#x}")
    if not problems:
        record["verdict"] = "fired"
    return record


def kernel_record(
    name: str,
    kver: str,
    layout: Any,
    not_applicable: Mapping[str, str],
    cases: Sequence[Dict[str, Any]],
    controls: Sequence[Control],
    control_findings: Mapping[str, Sequence[Finding]],
    clean_findings: Sequence[Finding],
    scenarios: Mapping[str, str],
    stray: Sequence[Finding] = (),
    teardown: Sequence[str] = (),
    seconds: float = 0.0,
) -> Dict[str, Any]:
    """
    One kernel's entry of the document.

    *cases* are :func:`case_record` results; *controls* the legitimate
    mappings held, with *control_findings* the findings of the audit that saw
    each one (keyed by control name, all of that audit's findings);
    *clean_findings* every finding of the whole-system audit of the clean
    guest; *scenarios* maps each lab scenario to ``"held"`` or why it was
    skipped; *stray* are findings at warning or error level on the holder
    outside every case; *teardown* the kernel's complaints after the holder
    restored and exited and the module was unloaded.
    """
    problems: List[str] = []
    for c in cases:
        problems.extend(f"{c['case']}: {p}" for p in c["problems"])
    errors = [f for f in clean_findings if f.severity == Severity.ERROR]
    problems.extend(
        f"clean guest: {f.rule} (error) in pid {f.vma.pid} ({f.vma.comm}) at {f.start:#x}-{f.end:#x}" for f in errors
    )
    problems.extend(f"holder: stray {f.rule} ({f.severity.label}) at {f.start:#x}-{f.end:#x}" for f in stray)
    problems.extend(f"teardown: {line}" for line in teardown)

    silent_on: Dict[str, List[str]] = {r.id: [] for r in RULES}
    control_rows = []
    for ctl in controls:
        domain = CONTROL_DOMAINS.get(ctl.name, ())
        hits = [f for f in control_findings.get(ctl.name, ()) if _overlaps(f, ctl.pid, ctl.start, ctl.end)]
        noisy = sorted({f.rule for f in hits if f.rule in domain or f.severity >= Severity.WARNING})
        for rule in domain:
            if rule not in noisy and rule in silent_on:
                silent_on[rule].append(ctl.name)
        problems.extend(f"control {ctl.name}: drew {rule}" for rule in noisy)
        control_rows.append({"control": ctl.name, "pid": ctl.pid, "start": _hex(ctl.start), "end": _hex(ctl.end),
                             "rules": list(domain), "noisy": noisy})

    rules: Dict[str, Dict[str, Any]] = {}
    for rule in RULES:
        mine = [c for c in cases if rule.id in c["trips"]]
        fired = [c["case"] for c in mine if c["verdict"] == "fired"]
        entry: Dict[str, Any] = {
            "status": "failed",
            "reason": "",
            "fired_by": fired,
            "silent_on": sorted(set(silent_on[rule.id])),
            "cases": [c["case"] for c in mine],
        }
        na = not_applicable.get(rule.id)
        if na:
            # The audit did not run the rule: its silence proves nothing.
            entry["status"], entry["reason"], entry["silent_on"] = "n/a", na, []
        elif fired:
            entry["status"] = "fired"
        elif any(c["verdict"] == "wrong" for c in mine):
            entry["reason"] = "; ".join(f"{c['case']}: {', '.join(c['problems'])}" for c in mine if c["problems"])
        elif mine and all(c["verdict"] == "skipped" for c in mine):
            entry["status"] = "n/a"
            entry["reason"] = "; ".join(f"{c['case']} not expressible: {c['skip']}" for c in mine)
        elif rule.id in NOT_PROVABLE and entry["silent_on"]:
            entry["status"], entry["reason"] = "silent", NOT_PROVABLE[rule.id]
        elif rule.id in NOT_PROVABLE:
            entry["reason"] = NOT_PROVABLE[rule.id] + "; but no legitimate mapping of its kind was held either"
        else:
            entry["reason"] = "no case trips it and no reason says why it cannot be proven"
        if entry["status"] == "failed":
            problems.append(f"rule {rule.id}: {entry['reason']}")
        rules[rule.id] = entry

    by_severity = {s.label: 0 for s in Severity}
    for f in clean_findings:
        by_severity[f.severity.label] += 1
    return {
        "name": name,
        "kver": kver,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 1),
        "layout": {
            "levels": layout.levels,
            "devmap_bit": layout.devmap_bit,
            "has_pmd_special": layout.has_pmd_special,
            "has_pud_special": layout.has_pud_special,
            "dax_refcounted": layout.dax_refcounted,
        },
        "clean": {
            "scenarios": dict(scenarios),
            "findings": by_severity,
            "errors": [dict(_finding_dict(f), pid=f.vma.pid, comm=f.vma.comm) for f in errors],
        },
        "cases": list(cases),
        "controls": control_rows,
        "rules": rules,
        "teardown": list(teardown),
        "problems": problems,
    }


def catalogue() -> List[Dict[str, str]]:
    """The rule catalogue as the document records it."""
    return [{"id": r.id, "severity": r.severity.label, "title": r.title, "kernels": r.kernels} for r in RULES]


def merge_kernels(existing: Optional[Mapping[str, Any]], kernels: Mapping[str, Mapping[str, Any]],
                  schema: str = SCHEMA) -> Dict[str, Any]:
    """
    The ``kernels`` of a lab document (schema *schema*): *kernels* (this run's
    entries) replacing those of *existing*, entries of other kernels kept (each
    carries its own ``when``), in :data:`KERNEL_ORDER`.
    """
    merged: Dict[str, Any] = {}
    if existing and existing.get("schema") == schema:
        merged.update(existing.get("kernels", {}))
    merged.update(kernels)
    order = {k: i for i, k in enumerate(KERNEL_ORDER)}
    return {k: merged[k] for k in sorted(merged, key=lambda k: (order.get(k, len(order)), k))}


def merge(existing: Optional[Mapping[str, Any]], kernels: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """
    A document with *kernels* (this run's entries) replacing those of
    *existing*; entries of other kernels are kept (each carries its own
    ``when``). The catalogue is this code's.
    """
    return {"schema": SCHEMA, "rules": catalogue(), "kernels": merge_kernels(existing, kernels)}


def load(path: "Path | str", schema: str = SCHEMA) -> Dict[str, Any]:
    """Read a lab document of *schema* (a proof document by default); ValueError if it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise ValueError(f"{path} is not a {schema} document")
    return doc


def write(path: "Path | str", doc: Mapping[str, Any]) -> None:
    """Write a lab document (proof, zoo) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def matrix(doc: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """
    The rule × kernel table: one row per rule of the document's catalogue,
    ``{"id", "severity", "title", "kernels": {name: {"status", "reason",
    "fired_by", "silent_on"}}}``; a kernel the run did not cover is absent.
    """
    rows = []
    for rule in doc["rules"]:
        cells = {}
        for name, entry in doc["kernels"].items():
            got = entry["rules"].get(rule["id"])
            if got is None:
                got = {"status": "missing", "reason": "the run predates this rule", "fired_by": [], "silent_on": []}
            cells[name] = {k: got.get(k) for k in ("status", "reason", "fired_by", "silent_on")}
        rows.append({"id": rule["id"], "severity": rule["severity"], "title": rule["title"], "kernels": cells})
    return rows


def _md(text: str) -> str:
    """*text* safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _cell(cell: Mapping[str, Any], note: Optional[int]) -> str:
    status = cell["status"]
    mark = f" [{note}]" if note is not None else ""
    if status == "fired":
        return "**fired**: " + ", ".join(f"`{c}`" for c in cell["fired_by"])
    if status == "silent":
        return "silent" + mark + ": " + ", ".join(f"`{c}`" for c in cell["silent_on"])
    return status + mark


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The proof matrix as a Markdown page (``docs/proof-matrix.md``)."""
    kernels = list(doc["kernels"])
    rows = matrix(doc)
    notes: Dict[str, int] = {}
    out = [
        "# Rule proof matrix",
        "",
        "<!-- Generated by scripts/proof-matrix from the JSON of a proof run "
        "(tests/lab/test_proofs.py). Do not edit: regenerate. -->",
        "",
        "Every rule of the catalogue, on each lab kernel, as the last proof run saw it "
        "(`tests/lab/test_proofs.py`, part of `scripts/test`). The test boots each kernel with every lab "
        "scenario held, audits the clean guest, then loads the lab module `p2p_violate`, which builds "
        "deliberately **wrong** page tables next to correct controls, and audits the process holding them over QMP.",
        "",
        "* **fired**: the case(s) named were held on that kernel and the audit reported exactly the rules the case "
        "must trip (this one among them), each with its catalogue severity, for the holder's PID, over exactly the "
        "case's mapping, and nothing else there.",
        "* **silent**: no wrong entry for the rule can be held safely (the note says why); the rule was checked "
        "silent on the legitimate mappings named.",
        "* **n/a**: the rule cannot apply to that kernel, or the kernel cannot express the case (the note says why).",
        "",
        "Kernels: " + ", ".join(
            f"`{name}` = {doc['kernels'][name]['kver']} ({doc['kernels'][name]['when']})" for name in kernels
        ) + ".",
        "",
        "| rule | severity | " + " | ".join(kernels) + " |",
        "|---|---|" + "---|" * len(kernels),
    ]
    for row in rows:
        cells = []
        for name in kernels:
            cell = row["kernels"][name]
            note = None
            if cell["status"] != "fired" and cell["reason"]:
                note = notes.setdefault(cell["reason"], len(notes) + 1)
            cells.append(_cell(cell, note))
        out.append(f"| `{row['id']}` | {row['severity']} | " + " | ".join(cells) + " |")
    if notes:
        out += ["", "Notes:", ""]
        out += [f"{n}. {_md(reason)}" for reason, n in notes.items()]

    out += ["", "## Silent on legitimate mappings", "",
            "The legitimate mappings of its kind each applicable rule was checked silent on: the module's controls, "
            "test_hmm's device-exclusive entries (`hmm-exclusive`) and the lab scenarios of the clean guest "
            "(`scenario:<name>`).", "",
            "| rule | " + " | ".join(kernels) + " |", "|---|" + "---|" * len(kernels)]
    for row in rows:
        cells = [", ".join(f"`{c}`" for c in row["kernels"][name]["silent_on"]) or "—" for name in kernels]
        out.append(f"| `{row['id']}` | " + " | ".join(cells) + " |")

    out += ["", "## Cases", "",
            "What each case of `p2p_violate` (and the holder's `hmm-exclusive`) must draw, and what it drew. "
            "A control must draw nothing at warning or error level.", "",
            "| case | what | must trip | " + " | ".join(kernels) + " |",
            "|---|---|---|" + "---|" * len(kernels)]
    names: List[str] = []
    by_kernel: Dict[str, Dict[str, Mapping[str, Any]]] = {}
    for name in kernels:
        by_kernel[name] = {c["case"]: c for c in doc["kernels"][name]["cases"]}
        names += [c["case"] for c in doc["kernels"][name]["cases"] if c["case"] not in names]
    for case in names:
        any_rec = next(by_kernel[k][case] for k in kernels if case in by_kernel[k])
        trips = ", ".join(f"`{t}`" for t in any_rec["trips"]) or "nothing (control)"
        cells = []
        for name in kernels:
            rec = by_kernel[name].get(case)
            if rec is None:
                cells.append("not held")
            elif rec["verdict"] == "skipped":
                cells.append("skipped: " + rec["skip"])
            elif rec["verdict"] == "silent":
                info = sorted({f["rule"] for f in rec["found"]})
                cells.append("silent" + (" (info: " + ", ".join(f"`{i}`" for i in info) + ")" if info else ""))
            elif rec["verdict"] == "fired":
                cells.append("fired")
            else:
                cells.append("**WRONG**: " + "; ".join(rec["problems"]))
        out.append(f"| `{case}` | {_md(any_rec['what'])} | {trips} | " + " | ".join(_md(c) for c in cells) + " |")

    out += ["", "## Clean guests", "",
            "Before the module is loaded, every process of the guest is audited: no finding may be at error level. "
            "The held scenarios are also the controls named above (`scenario:<name>`).", "",
            "| kernel | scenarios held | skipped | findings (error / warning / info) |", "|---|---|---|---|"]
    for name in kernels:
        clean = doc["kernels"][name]["clean"]
        held = [s for s, v in clean["scenarios"].items() if v == "held"]
        skipped = [f"{s} ({v})" for s, v in clean["scenarios"].items() if v != "held"]
        counts = clean["findings"]
        out.append(f"| {name} | {', '.join(held)} | {_md('; '.join(skipped)) or '—'} | "
                   f"{counts.get('error', 0)} / {counts.get('warning', 0)} / {counts.get('info', 0)} |")
    problems = [(name, p) for name in kernels for p in doc["kernels"][name]["problems"]]
    if problems:
        out += ["", "## Problems", ""] + [f"* {name}: {p}" for name, p in problems]
    return "\n".join(out) + "\n"


def render_terminal(console: Any, doc: Mapping[str, Any]) -> None:
    """Print the proof matrix with rich: one row per rule, one column per kernel, then the notes."""
    from rich.table import Table

    kernels = list(doc["kernels"])
    table = Table(title="rule proofs", title_justify="left")
    table.add_column("rule")
    table.add_column("severity")
    for name in kernels:
        table.add_column(f"{name}\n{doc['kernels'][name]['kver']}", overflow="fold")
    style = {"fired": "green", "silent": "yellow", "n/a": "dim"}
    notes: Dict[str, int] = {}
    for row in matrix(doc):
        cells = []
        for name in kernels:
            cell = row["kernels"][name]
            status = cell["status"]
            text = f"[{style.get(status, 'bold red')}]{status}[/]"
            if status == "fired":
                text += " " + ", ".join(cell["fired_by"])
            elif cell["reason"]:
                text += f" [{notes.setdefault(cell['reason'], len(notes) + 1)}]"
            if status == "silent":
                text += " on " + ", ".join(cell["silent_on"])
            cells.append(text)
        table.add_row(row["id"], row["severity"], *cells)
    console.print(table)
    for reason, n in notes.items():
        console.print(f"[{n}] {reason}", markup=False, soft_wrap=True)
    problems = [(name, p) for name in kernels for p in doc["kernels"][name]["problems"]]
    for name, p in problems:
        console.print(f"[bold red]problem[/] {name}: {p}", soft_wrap=True)


def render_main(argv: Optional[Sequence[str]], usage: str, schema: str,
                render: Callable[[Mapping[str, Any]], str]) -> int:
    """``python -m MODULE FILE``: print *render* of the lab document FILE (schema *schema*)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    try:
        doc = load(args[0], schema)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(render(doc))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m drgn_p2p.lab.proof FILE``: print the Markdown page of a proof document."""
    return render_main(argv, "python -m drgn_p2p.lab.proof PROOF.json", SCHEMA, render_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
