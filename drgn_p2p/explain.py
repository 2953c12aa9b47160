# SPDX-License-Identifier: GPL-2.0-or-later
"""
Explain
-------

The per-level walk of one user address, crash ``vtop`` style: every entry
with every bit named, the VMA, the PFN's page kind and pgmap, and the
verdict of every rule on that leaf.
"""

from collections import Counter
from typing import Dict, List

import drgn
from rich.console import Console
from rich.markup import escape

from .arch import decode_leaf, describe
from .pipeline import select_rules
from .classify import Classifier, page_zone
from .errors import UsageError
from .gup import predict as predict_gup_leaf, predictions_dict, vma_shape
from .layout import read_layout
from .records import Level, PageKind, Run
from .report import safe_text, table
from .rules import evaluate_run
from .tasks import find_process
from .walk import PageTableWalker, process_vmas

__all__ = ("explain", "print_explanation", "print_gup")

#: Verdicts :func:`print_explanation` counts instead of listing.
_QUIET_VERDICTS = ("ok", "not applicable")


def explain(prog: drgn.Program, pid: int, va: int) -> Dict[str, object]:
    """Explain address *va* of process *pid*; returns a JSON-ready dict.

    :raises UsageError: if there is no such process or *va* is in no VMA.
    """
    layout = read_layout(prog)
    faults: List[str] = []
    process = find_process(prog, pid, on_fault=lambda message, _pid: faults.append(message))
    if process is None:
        raise UsageError(f"no process with pid {pid}" + (f" ({faults[0]})" if faults else ""))
    vma = next(iter(process_vmas(prog, process, va, va + 1)), None)
    if vma is None:
        raise UsageError(f"address {va:#x} is not in any VMA of pid {pid}")
    walker = PageTableWalker.for_mm(prog, layout, process.mm)
    try:
        path = walker.path(va)
    except drgn.FaultError as e:
        raise UsageError(f"cannot read the page tables of pid {pid}: {e}") from None
    levels: List[Dict[str, object]] = []
    for level, entry_phys, raw in path:
        bits, cache = describe(raw, level, layout)
        levels.append(
            {"level": level.label, "entry_phys": hex(entry_phys), "raw": hex(raw), "bits": bits, "cache": cache}
        )
    doc: Dict[str, object] = {
        "pid": pid,
        "comm": process.comm,
        "address": hex(va),
        "vma": {
            "start": hex(vma.start),
            "end": hex(vma.end),
            "flags": hex(vma.flags),
            "flag_names": layout.vm_flag_names(vma.flags),
            "file": vma.file,
            "ops": vma.ops,
        },
        "walk": levels,
        "leaf": None,
        "rules": [],
        "gup": _gup_json(predict_gup_leaf(layout, vma_shape(vma), None, PageKind.NONE)),
    }
    level, _, raw = path[-1]
    table = layout.geometry.levels[len(path) - 1]
    leaf_level, shift = table.leaf_level, table.shift
    leaf = None
    if leaf_level in (Level.PTE, Level.PMD, Level.PUD):
        leaf = decode_leaf(raw, va & ~((1 << shift) - 1), leaf_level, layout)
    if leaf is None:
        return doc
    classifier = Classifier(prog, layout)
    page = classifier.classify(leaf.pfn)
    doc["leaf"] = {
        "kind": leaf.kind.value,
        "level": leaf.level.label,
        "pfn": hex(leaf.pfn) if leaf.pfn is not None else None,
        "special": leaf.special,
        "devmap": leaf.devmap,
        "writable": leaf.writable,
        "swap_type": leaf.swap_type,
        "page_kind": page.kind.value,
        "pgmap": hex(page.pgmap) if page.pgmap else None,
        "owner": page.owner,
        "memmap_readable": page.memmap_readable,
        "zone": page_zone(prog, layout, leaf.pfn) if page.kind.has_memmap else None,
    }
    active, skipped = select_rules(layout)
    run = Run(vma=vma, first=leaf, count=1, page=page)
    fired = {f.rule: f for f in evaluate_run(run, layout, active)}
    rules = []
    for rule in active:
        f = fired.get(rule.id)
        rules.append(
            {
                "rule": rule.id,
                "verdict": f.severity.label if f else "ok",
                "message": f.message if f else None,
            }
        )
    for rule_id, reason in skipped.items():
        rules.append({"rule": rule_id, "verdict": "not applicable", "message": reason})
    doc["rules"] = rules
    shape = vma_shape(vma, fsdax_pages=page.kind == PageKind.FSDAX)
    doc["gup"] = _gup_json(predict_gup_leaf(layout, shape, leaf, page.kind))
    return doc


def _gup_json(predictions) -> Dict[str, object]:
    return dict(predictions_dict(predictions))


def print_gup(console: Console, gup: Dict[str, Dict[str, object]], empty: bool) -> None:
    """The GUP prediction of one address as a table: user, outcome, deciding function, why."""
    title = "GUP prediction" + (" (nothing mapped: after the fault)" if empty else "")
    rows = table(title, ("user", "outcome", "decided by", "why"))
    for user, p in gup.items():
        outcome = str(p["outcome"]) + (" (migrates)" if p["migrates"] else "")
        rows.add_row(user, outcome, str(p["decided_by"]), escape(str(p["why"])))
    console.print(rows)


def print_explanation(console: Console, doc: Dict[str, object]) -> None:
    """Render :func:`explain`'s result."""
    vma = doc["vma"]
    console.print(
        f"[bold]pid {doc['pid']} ({safe_text(doc['comm'])})[/] address {doc['address']}\n"
        f"VMA {vma['start']}-{vma['end']} flags {vma['flags']} ({' '.join(vma['flag_names'])})"
        f" ops {safe_text(vma['ops']) or '-'} file {safe_text(vma['file']) or '-'}"
    )
    walk = table(None, ("level", "entry at", "raw", "bits", "cache"), addresses=("entry at", "raw"))
    for row in doc["walk"]:
        walk.add_row(row["level"], row["entry_phys"], row["raw"], " ".join(row["bits"]), row["cache"])
    console.print(walk)
    leaf = doc["leaf"]
    if leaf is None:
        console.print("No leaf maps this address.")
        print_gup(console, doc["gup"], empty=True)
        return
    console.print(
        f"leaf: {leaf['kind']} {leaf['level']} pfn {leaf['pfn']} special={leaf['special']} "
        f"devmap={leaf['devmap']} → page kind [bold]{leaf['page_kind']}[/]"
        + (f" pgmap {leaf['pgmap']}" if leaf["pgmap"] else "")
        + (f" owner {safe_text(leaf['owner'])}" if leaf["owner"] else "")
        + ("" if leaf["memmap_readable"] else " (struct page unreadable: classified from the pgmap)")
    )
    verdicts = Counter(r["verdict"] for r in doc["rules"])
    for r in doc["rules"]:
        if r["verdict"] not in _QUIET_VERDICTS:
            console.print(f"  [bold red]{r['verdict']:>7}[/] {r['rule']}: {escape(r['message'] or '')}", soft_wrap=True)
    fired = sum(n for v, n in verdicts.items() if v not in _QUIET_VERDICTS)
    console.print(
        f"{fired or 'No'} rule{'' if fired == 1 else 's'} fired on this leaf"
        f"; {verdicts['ok']} other{'' if verdicts['ok'] == 1 else 's'} passed"
        f", {verdicts['not applicable']} do not apply to this kernel (--json lists every verdict)."
    )
    print_gup(console, doc["gup"], empty=False)
