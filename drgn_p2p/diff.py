# SPDX-License-Identifier: GPL-2.0-or-later
"""
Diff
----

``drgn-p2p diff A.json B.json``: what changed between two audits (two
kernels, a kernel before and after a patch, two machines) in the page tables
of each kind of mapping.

Mappings are matched by what they are, never by address or PID, so that two
boots compare: by their :class:`~drgn_p2p.kinds.MappingKind` (the VMA's file,
its ``vm_ops`` symbol, shared or private, the permissions asked for; see
:mod:`drgn_p2p.kinds`). The VMA flags the kernel chose (``VM_PFNMAP``,
``VM_MIXEDMAP``, ``VM_IO``, …), the page kinds, the leaf levels, the bits
(special, devmap per level, and the cache mode of each level with
``--runs``) and the verdicts (the rules that fired, with their severity) are
what is compared: for each kind, the set of each over all its VMAs. So a
kind's facts say "some leaf of this kind of mapping is a PMD with devmap
set", not how many — counts depend on the processes, not the kernel.

Everything here works on the JSON documents (schema ``drgn-p2p/audit/1``)
and returns records; :func:`diff_json` and :func:`print_diff` render them.
"""

import json
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

from rich.console import Console

from .errors import UsageError
from .kinds import MappingKind, kind_of_vma_json
from .report import table

__all__ = (
    "SCHEMA",
    "AUDIT_SCHEMA",
    "MappingKind",
    "KindFacts",
    "FieldChange",
    "KindChange",
    "AuditDiff",
    "load_audit",
    "mapping_kind",
    "mapping_facts",
    "diff_audits",
    "diff_json",
    "print_diff",
)

#: The schema of the document ``drgn-p2p diff --json`` writes (``drgn_p2p/schema/diff-1.json``).
SCHEMA = "drgn-p2p/diff/1"
#: The schema of the documents it compares.
AUDIT_SCHEMA = "drgn-p2p/audit/1"

#: The facts compared per mapping kind, in the order they are shown.
FIELDS = ("page_kinds", "levels", "entries", "bits", "cache", "flags", "verdicts")

#: The layout facts whose change a diff reports.
_LAYOUT_FACTS = ("levels", "devmap_bit", "has_pmd_special", "has_pud_special", "dax_refcounted", "pfn_mask")


@dataclass(frozen=True)
class KindFacts:
    """One mapping kind in one audit: the set of each fact over its VMAs."""

    vmas: int
    page_kinds: Tuple[str, ...]  # page kinds mapped by present leaves
    levels: Tuple[str, ...]  # levels of present leaves ("pte", "pmd", "pud")
    entries: Tuple[str, ...]  # entry kinds (present, device-private, swap, …)
    bits: Tuple[str, ...]  # "pte special", "pmd devmap", … ("special"/"devmap" without a level when no runs)
    cache: Tuple[str, ...]  # "pte WB", "pmd UC-", … (only from --runs)
    flags: Tuple[str, ...]  # VM_* names set on any of its VMAs
    verdicts: Tuple[str, ...]  # "severity rule" of every rule that fired on it


@dataclass(frozen=True)
class FieldChange:
    """One fact of a kind that differs: what only *a* had, what only *b* has."""

    field: str
    removed: Tuple[str, ...]
    added: Tuple[str, ...]


@dataclass(frozen=True)
class KindChange:
    """A mapping kind in both audits whose facts differ."""

    kind: MappingKind
    a: KindFacts
    b: KindFacts
    changes: Tuple[FieldChange, ...]


@dataclass(frozen=True)
class AuditDiff:
    """Two audits compared."""

    a_kernel: str
    b_kernel: str
    #: Layout facts that differ: (name, value in a, value in b).
    layout: Tuple[Tuple[str, object, object], ...]
    #: Rules that apply to one kernel only: (rule, why not in a or None, why not in b or None).
    rules: Tuple[Tuple[str, Optional[str], Optional[str]], ...]
    changed: Tuple[KindChange, ...]
    only_a: Tuple[Tuple[MappingKind, KindFacts], ...]
    only_b: Tuple[Tuple[MappingKind, KindFacts], ...]
    unchanged: Tuple[MappingKind, ...]


def load_audit(path: str) -> Dict:
    """The audit document in file *path*.

    :raises UsageError: (one line) when the file cannot be read, is not JSON,
        or is not a drgn-p2p audit document of schema ``drgn-p2p/audit/1``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise UsageError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema != AUDIT_SCHEMA:
        if isinstance(schema, str) and schema.startswith("drgn-p2p/audit/"):
            raise UsageError(f"{path} is a {schema} document; this drgn-p2p reads {AUDIT_SCHEMA}")
        raise UsageError(f"{path} is not a drgn-p2p audit document (no \"schema\": \"{AUDIT_SCHEMA}\"; "
                         "write one with 'drgn-p2p audit --json')")
    for key, kind in (("vmas", list), ("findings", list), ("kernel", dict), ("layout", dict)):
        if not isinstance(doc.get(key), kind):
            raise UsageError(f"{path} is not a complete drgn-p2p audit document: {key!r} is missing or not a {kind.__name__}")
    return doc


def mapping_kind(vma: Mapping) -> MappingKind:
    """The :class:`MappingKind` of a ``vma`` object of an audit document."""
    return kind_of_vma_json(vma)


def mapping_facts(doc: Mapping) -> Dict[MappingKind, KindFacts]:
    """Every mapping kind of audit document *doc*, with its facts."""
    acc: Dict[MappingKind, Dict[str, set]] = {}
    vmas: Dict[MappingKind, int] = {}
    for v in doc["vmas"]:
        kind = mapping_kind(v)
        vmas[kind] = vmas.get(kind, 0) + 1
        facts = acc.setdefault(kind, {name: set() for name in FIELDS})
        facts["page_kinds"].update(k for k, n in v.get("pages", {}).items() if n)
        facts["levels"].update(k for k, n in v.get("leaves", {}).items() if n)
        facts["entries"].update(k for k, n in v.get("entries", {}).items() if n)
        facts["flags"].update(v.get("flag_names") or ())
        runs = v.get("runs")
        if runs:
            for run in runs:
                if run.get("entry") not in ("present", "protnone"):
                    continue
                facts["bits"].update(f"{run['level']} {bit}" for bit in ("special", "devmap") if run.get(bit))
                if run.get("cache"):
                    facts["cache"].add(f"{run['level']} {run['cache']}")
        else:
            facts["bits"].update(bit for bit in ("special", "devmap") if v.get(bit))
    for f in doc["findings"]:
        kind = mapping_kind(f["vma"])
        if kind in acc:
            acc[kind]["verdicts"].add(f"{f['severity']} {f['rule']}")
    return {
        kind: KindFacts(vmas=vmas[kind], **{name: tuple(sorted(values)) for name, values in facts.items()})
        for kind, facts in acc.items()
    }


def _compare(a: KindFacts, b: KindFacts, both_runs: bool) -> Tuple[FieldChange, ...]:
    changes = []
    for name in FIELDS:
        before, after = set(getattr(a, name)), set(getattr(b, name))
        if name in ("bits", "cache") and not both_runs:
            # Without --runs on both sides bits are compared without levels, and no cache modes.
            before, after = {x.rpartition(" ")[2] for x in before}, {x.rpartition(" ")[2] for x in after}
            if name == "cache":
                continue
        if before != after:
            changes.append(FieldChange(name, tuple(sorted(before - after)), tuple(sorted(after - before))))
    return tuple(changes)


def _has_runs(doc: Mapping) -> bool:
    return any("runs" in v for v in doc["vmas"])


def diff_audits(a: Mapping, b: Mapping) -> AuditDiff:
    """Compare audit documents *a* and *b* (see the module's description)."""
    fa, fb = mapping_facts(a), mapping_facts(b)
    both_runs = _has_runs(a) and _has_runs(b)
    changed, unchanged = [], []
    for kind in sorted(fa.keys() & fb.keys()):
        changes = _compare(fa[kind], fb[kind], both_runs)
        if changes:
            changed.append(KindChange(kind, fa[kind], fb[kind], changes))
        else:
            unchanged.append(kind)
    la, lb = a["layout"], b["layout"]
    layout = tuple((name, la.get(name), lb.get(name)) for name in _LAYOUT_FACTS if la.get(name) != lb.get(name))
    na, nb = a.get("not_applicable") or {}, b.get("not_applicable") or {}
    rules = tuple((r, na.get(r), nb.get(r)) for r in sorted(set(na) ^ set(nb)))
    return AuditDiff(
        a_kernel=a["kernel"].get("release", "?"),
        b_kernel=b["kernel"].get("release", "?"),
        layout=layout,
        rules=rules,
        changed=tuple(changed),
        only_a=tuple((k, fa[k]) for k in sorted(fa.keys() - fb.keys())),
        only_b=tuple((k, fb[k]) for k in sorted(fb.keys() - fa.keys())),
        unchanged=tuple(unchanged),
    )


def _kind_json(kind: MappingKind) -> Dict[str, str]:
    return {"file": kind.file, "ops": kind.ops, "share": kind.share, "prot": kind.prot}


def _facts_json(facts: KindFacts) -> Dict[str, object]:
    return {"vmas": facts.vmas, **{name: list(getattr(facts, name)) for name in FIELDS}}


def diff_json(d: AuditDiff) -> Dict[str, object]:
    """The diff as the document of schema ``drgn-p2p/diff/1``."""
    return {
        "schema": SCHEMA,
        "a": {"kernel": d.a_kernel},
        "b": {"kernel": d.b_kernel},
        "layout": [{"fact": name, "a": va, "b": vb} for name, va, vb in d.layout],
        "rules": [{"rule": r, "a_not_applicable": wa, "b_not_applicable": wb} for r, wa, wb in d.rules],
        "changed": [
            {
                "kind": _kind_json(c.kind),
                "a": _facts_json(c.a),
                "b": _facts_json(c.b),
                "changes": [{"field": f.field, "removed": list(f.removed), "added": list(f.added)} for f in c.changes],
            }
            for c in d.changed
        ],
        "only_a": [{"kind": _kind_json(k), "facts": _facts_json(f)} for k, f in d.only_a],
        "only_b": [{"kind": _kind_json(k), "facts": _facts_json(f)} for k, f in d.only_b],
        "unchanged": [_kind_json(k) for k in d.unchanged],
    }


def _change_text(f: FieldChange) -> str:
    parts = [f"[red]-{x}[/]" for x in f.removed] + [f"[green]+{x}[/]" for x in f.added]
    return " ".join(parts)


def _facts_text(facts: KindFacts, names: Sequence[str] = ("page_kinds", "levels", "bits", "verdicts")) -> str:
    return "; ".join(f"{name}: {','.join(getattr(facts, name)) or '-'}" for name in names)


def print_diff(console: Console, d: AuditDiff) -> None:
    """The diff as rich tables."""
    from rich.markup import escape

    console.print(f"[bold]drgn-p2p diff[/] a: {escape(d.a_kernel)}  b: {escape(d.b_kernel)}")
    if d.layout:
        t = table("kernel layout", ["fact", "a", "b"])
        for name, va, vb in d.layout:
            t.add_row(name, escape(str(va)), escape(str(vb)))
        console.print(t)
    if d.rules:
        t = table("rules that apply to one kernel only", ["rule", "a", "b"])
        for r, wa, wb in d.rules:
            t.add_row(r, escape(f"not applicable: {wa}") if wa else "applies", escape(f"not applicable: {wb}") if wb else "applies")
        console.print(t)
    if d.changed:
        t = table("mapping kinds that changed", ["mapping kind", "fact", "change (-a +b)", "a", "b"])
        for c in d.changed:
            for i, f in enumerate(c.changes):
                t.add_row(
                    escape(c.kind.label) if i == 0 else "", f.field, _change_text(_escaped(f)),
                    escape(",".join(getattr(c.a, f.field)) or "-"), escape(",".join(getattr(c.b, f.field)) or "-"),
                )
        console.print(t)
    for title, items in (("only in a", d.only_a), ("only in b", d.only_b)):
        if items:
            t = table(f"mapping kinds {title}", ["mapping kind", "vmas", "facts"])
            for kind, facts in items:
                t.add_row(escape(kind.label), str(facts.vmas), escape(_facts_text(facts)))
            console.print(t)
    console.print(
        f"{len(d.changed)} mapping kinds changed, {len(d.only_a)} only in a, {len(d.only_b)} only in b, "
        f"{len(d.unchanged)} unchanged"
    )


def _escaped(f: FieldChange) -> FieldChange:
    from rich.markup import escape

    return FieldChange(f.field, tuple(escape(x) for x in f.removed), tuple(escape(x) for x in f.added))

