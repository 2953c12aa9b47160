# SPDX-License-Identifier: GPL-2.0-or-later
"""
Report
------

Turn audit records into JSON (a documented, versioned schema) and into rich
tables. Rendering is kept apart from the data: every ``*_json`` function
returns plain dicts, every ``print_*`` function only prints.
"""

from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .arch import describe
from .coalesce import group_findings
from .gup import FLAVOURS
from .records import Finding, Layout, Severity, Vma

__all__ = (
    "SCHEMA",
    "is_device_mapping",
    "safe_text",
    "printable",
    "summary_text",
    "vma_at",
    "gup_summary",
    "vm_flag_mnemonics",
    "layout_json",
    "audit_json",
    "print_audit",
    "print_maps",
    "print_pgmaps",
    "print_layout",
    "table",
)

#: Version of the JSON document ``drgn-p2p audit --json`` writes.
#: Bump the number on any incompatible change; adding keys is compatible.
SCHEMA = "drgn-p2p/audit/1"

#: smaps VmFlags mnemonics (fs/proc/task_mmu.c show_smap_vma_flags()).
_MNEMONICS = {
    "READ": "rd", "WRITE": "wr", "EXEC": "ex", "SHARED": "sh", "MAYREAD": "mr",
    "MAYWRITE": "mw", "MAYEXEC": "me", "MAYSHARE": "ms", "GROWSDOWN": "gd",
    "UFFD_MISSING": "um", "PFNMAP": "pf", "MAYBE_GUARD": "gu", "UFFD_WP": "uw",
    "LOCKED": "lo", "IO": "io", "SEQ_READ": "sr", "RAND_READ": "rr",
    "DONTCOPY": "dc", "DONTEXPAND": "de", "LOCKONFAULT": "lf", "ACCOUNT": "ac",
    "NORESERVE": "nr", "HUGETLB": "ht", "SYNC": "sf", "PAT": "ar",
    "WIPEONFORK": "wf", "DONTDUMP": "dd", "SOFTDIRTY": "sd", "MIXEDMAP": "mm",
    "HUGEPAGE": "hg", "NOHUGEPAGE": "nh", "MERGEABLE": "mg", "UFFD_MINOR": "ui",
    "SHADOW_STACK": "ss", "DROPPABLE": "dp", "SEALED": "sl",
}


def safe_text(value: Optional[str]) -> str:
    """A string read from the target (a command name, a path, a symbol), fit for the terminal.

    Non-printable characters (newlines, ESC of a terminal escape sequence, …)
    become their Python escapes and rich markup is escaped, so a process
    called ``[/x]\\x1b[2J`` prints as itself instead of breaking the report or
    the terminal. JSON output needs none of this: it escapes by itself.
    """
    return escape(printable(value))


def printable(value: Optional[str]) -> str:
    """*value* on one line of printable characters: the others become their
    Python escapes (``\\n``, ``\\x1b``). For plain-text reports (KTAP, JUnit XML)."""
    if not value:
        return ""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def table(title: Optional[str], columns: Sequence[str], addresses: Sequence[str] = ()) -> Table:
    """A rich table whose *addresses* columns never wrap: the others fold first.

    An address (or an address range) split over two lines cannot be copied
    or searched for, in a narrow terminal or a CI log alike.
    """
    t = Table(title=title, title_justify="left", show_header=True)
    for col in columns:
        if col in addresses:
            t.add_column(col, no_wrap=True, overflow="ignore")
        else:
            t.add_column(col, overflow="fold")
    return t


def vm_flag_mnemonics(flags: int, layout: Layout) -> str:
    """smaps-style ``VmFlags`` mnemonics of *flags*: a flag smaps has no
    mnemonic for is its name in lower case (``pkey_bit0``), a bit this kernel
    gives no name is ``bitN``."""
    return " ".join(_MNEMONICS.get(n, n.lower()) for n in layout.vm_flag_names(flags))


def _vma_json(vma: Vma, layout: Layout) -> Dict[str, object]:
    return {
        "pid": vma.pid,
        "comm": vma.comm,
        "start": hex(vma.start),
        "end": hex(vma.end),
        "flags": hex(vma.flags),
        "flag_names": layout.vm_flag_names(vma.flags),
        "pgoff": vma.pgoff,
        "file": vma.file,
        "ops": vma.ops,
    }


def finding_json(finding: Finding, layout: Layout) -> Dict[str, object]:
    leaf = finding.first
    bits = describe(leaf.raw, leaf.level, layout) if leaf is not None else None
    return {
        "rule": finding.rule,
        "severity": finding.severity.label,
        "pid": finding.vma.pid,
        "comm": finding.vma.comm,
        "start": hex(finding.start),
        "end": hex(finding.end),
        "count": finding.count,
        "message": finding.message,
        "vma": _vma_json(finding.vma, layout),
        "level": leaf.level.label if leaf else None,
        "entry": leaf.kind.value if leaf else None,
        "raw": hex(leaf.raw) if leaf else None,
        "pfn": hex(leaf.pfn) if leaf and leaf.pfn is not None else None,
        "bits": bits[0] if bits else None,
        "cache": bits[1] if bits else None,
        "page": {
            "kind": finding.page.kind.value,
            "pgmap": hex(finding.page.pgmap) if finding.page.pgmap else None,
            "owner": finding.page.owner,
            "memmap_readable": finding.page.memmap_readable,
        }
        if finding.page
        else None,
        "evidence": dict(finding.evidence),
    }


def run_json(run, layout: Layout) -> Dict[str, object]:
    """One coalesced run of leaves (``audit --runs``)."""
    leaf = run.first
    cache = describe(leaf.raw, leaf.level, layout)[1] if leaf.kind.maps_memory else ""
    return {
        "start": hex(run.start),
        "end": hex(run.end),
        "count": run.count,
        "level": leaf.level.label,
        "entry": leaf.kind.value,
        "raw": hex(leaf.raw),
        "pfn": hex(leaf.pfn) if leaf.pfn is not None else None,
        "special": leaf.special,
        "devmap": leaf.devmap,
        # The cache mode of a present leaf (WB, UC-, WC, …; null otherwise).
        "cache": cache or None,
        "page": run.page.kind.value,
        "owner": run.page.owner,
        # False where the struct pages could not be read (a memmap on the
        # device, outside a vmcore or /proc/kcore): the kind came from the pgmap.
        "memmap_readable": run.page.memmap_readable,
    }


def _geometry_json(geometry) -> Dict[str, object]:
    """The page-table geometry: levels top first, and how an entry gives its output address."""
    return {
        "va_bits": geometry.va_bits,
        "levels": [{"level": t.level.label, "leaf_level": t.leaf_level.label, "shift": t.shift, "entries": t.entries}
                   for t in geometry.levels],
        "addr_mask": hex(geometry.addr_mask),
        "addr_high_mask": hex(geometry.addr_high_mask),
        "addr_high_shift": geometry.addr_high_shift,
    }


def layout_json(layout: Layout) -> Dict[str, object]:
    """The layout, each value with how it was learned."""
    fields = {
        "arch": layout.arch,
        "release": layout.release,
        "levels": layout.levels,
        "pfn_mask": hex(layout.pfn_mask),
        "sme_mask": hex(layout.sme_mask),
        "devmap_bit": layout.devmap_bit,
        "has_pmd_special": layout.has_pmd_special,
        "has_pud_special": layout.has_pud_special,
        "dax_refcounted": layout.dax_refcounted,
        "swap": {k: v for k, v in vars(layout.swap).items()},
        "pte_markers": dict(layout.pte_markers),
        "vm_flags": dict(layout.vm_flags),
        "memory_types": dict(layout.memory_types),
        "pgmap_in": layout.pgmap_in,
        "zone_device": layout.zone_device,
        "zero_pfn": hex(layout.zero_pfn),
        "huge_zero_pfn": hex(layout.huge_zero_pfn) if layout.huge_zero_pfn is not None else None,
        "zone_shift": layout.zone_shift,
        "zone_bits": layout.zone_bits,
        "gup_p2pdma_gate": layout.gup_p2pdma_gate,
        "gup_longterm_file_check": layout.gup_longterm_file_check,
        "gup_fast_renamed": layout.gup_fast_renamed,
        "fb_defio_page_mapping": layout.fb_defio_page_mapping,
        "proc_mem_force": layout.proc_mem_force,
        "gup_fast_secretmem_mapping": layout.gup_fast_secretmem_mapping,
        "highest_memmap_pfn": hex(layout.highest_memmap_pfn) if layout.highest_memmap_pfn is not None else None,
        "page_shift": layout.page_shift,
        "geometry": _geometry_json(layout.geometry),
        "arm64": None if layout.arm64 is None else {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(layout.arm64).items()},
    }
    learned = {
        name: {"how": l.how, "detail": l.detail} for name, l in layout.learned.items()
    }
    return {"layout": fields, "learned": learned}


def audit_json(result, layout: Layout) -> Dict[str, object]:
    """The ``drgn-p2p audit --json`` document (schema :data:`SCHEMA`)."""
    counts = {s.label: 0 for s in Severity}
    for f in result.findings:
        counts[f.severity.label] += 1
    suppressed = result.suppressed
    return {
        "schema": SCHEMA,
        "kernel": {"release": layout.release, "arch": layout.arch},
        "layout": layout_json(layout)["layout"],
        "summary": {
            "processes": result.stats.processes,
            "vmas": result.stats.vmas,
            "tables_read": result.stats.tables_read,
            "unreadable_tables": result.stats.table_faults,
            "unreadable_processes": result.stats.process_faults,
            "unreadable_pgmaps": result.stats.pgmap_faults,
            "withdrawn": result.stats.withdrawn,
            "seconds": round(result.stats.seconds, 3),
            "findings": counts,
            "suppressed": len(suppressed),
        },
        "vmas": [
            {
                **_vma_json(r.vma, layout),
                "pages": dict(r.pages_by_kind),
                "entries": dict(r.entries_by_kind),
                "leaves": dict(r.leaves_by_level),
                "special": r.special,
                "devmap": r.devmap,
                "unreadable_tables": r.unreadable_tables,
                "gup": [segment.as_dict() for segment in r.gup],
                **({"runs": [run_json(run, layout) for run in r.runs]} if r.runs else {}),
            }
            for r in result.vmas
        ],
        "findings": [{**finding_json(f, layout), "suppressed": suppressed.get(id(f))} for f in result.findings],
        "groups": _groups_json(result.findings),
        "rules": list(result.rules),
        "not_applicable": dict(result.not_applicable),
        "faults": [
            {
                "scope": fault.scope,
                "pid": vma.pid if vma else fault.pid,
                "level": fault.level.label if fault.level is not None else None,
                "va": hex(fault.va),
                "phys": hex(fault.phys),
                "message": fault.message,
            }
            for vma, fault in result.faults
        ],
    }


def _main_segment(segments):
    """The segment a one-line summary shows: the first one something is mapped in."""
    for seg in segments:
        if not seg.hole:
            return seg
    return segments[0] if segments else None


#: Short names of the GUP flavours (:data:`drgn_p2p.gup.FLAVOURS`) for the one-line summary.
_SHORT = dict(zip(FLAVOURS, ("fast", "pin", "longterm", "p2pdma")))


def gup_summary(predictions) -> str:
    """One line: the flavours' outcomes, then the users grouped by outcome.

    ``fast:fallback pin:refuse(EFAULT) … | EFAULT: odirect-read vmsplice | ok: proc-pid-mem``
    """
    flavours, users = [], {}
    for p in predictions:
        if p.user in _SHORT:
            outcome = p.outcome
            if outcome == "refuse" and p.why.startswith("-E"):
                outcome += f"({p.why[1:].split(':', 1)[0]})"
            flavours.append(f"{_SHORT[p.user]}:{outcome}")
        else:
            users.setdefault(p.outcome + ("+migrates" if p.migrates else ""), []).append(p.user)
    return " ".join(flavours) + "".join(f" | {o}: {' '.join(u)}" for o, u in users.items())


def summary_text(result) -> str:
    """The audit's one-line summary: what was read, what could not be, what was found."""
    s = result.stats
    counts = {sev: sum(1 for f in result.findings if f.severity == sev) for sev in Severity}
    return (
        f"{s.processes} processes, {s.vmas} VMAs, {s.tables_read} page tables read"
        f" ({s.table_faults} unreadable)"
        + (f", {s.process_faults} processes unreadable" if s.process_faults else "")
        + (f", pgmap table incomplete ({s.pgmap_faults} unreadable parts)" if s.pgmap_faults else "")
        + (f", {s.withdrawn} findings withdrawn (not seen again: changed while read)" if s.withdrawn else "")
        + f" in {s.seconds:.2f}s; "
        f"{counts[Severity.ERROR]} errors, {counts[Severity.WARNING]} warnings, {counts[Severity.INFO]} info"
        + (f" ({len(result.suppressed)} suppressed by the baseline)" if result.suppressed else "")
    )


def _groups_json(findings) -> list:
    """The findings grouped as the text report shows them: indexes into ``findings``."""
    index = {id(f): i for i, f in enumerate(findings)}
    return [
        {
            "rule": g.first.rule,
            "severity": g.first.severity.label,
            "processes": len(g.pids),
            "pids": list(g.pids),
            "findings": [index[id(f)] for f in g.findings],
        }
        for g in group_findings(findings)
    ]


_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}

#: Page kinds worth a column of their own in the summary.
_INTERESTING = ("fsdax", "devdax", "device-generic", "p2pdma", "device-private", "device-coherent", "no-memmap")


def is_device_mapping(r, layout: Layout) -> bool:
    """Whether the VMA report *r* maps device memory (mapped, or held in
    device-private entries), or any page behind a PFNMAP/MIXEDMAP/IO VMA."""
    kinds = dict(r.pages_by_kind)
    return bool(
        any(k in kinds for k in _INTERESTING)
        or r.pages_by_pgmap
        or (kinds and r.vma.has(layout, "PFNMAP", "MIXEDMAP", "IO"))
    )


def print_audit(console: Console, result, layout: Layout, verbose: bool = False) -> None:
    """Print the per-VMA summary and the findings by rule."""
    rows = table(
        f"Device and PFN mappings — {layout.release}",
        ("pid", "comm", "range", "flags", "ops/file", "pages by kind", "leaves", "other entries", "S", "D"),
        addresses=("range",),
    )
    gup_lines = []
    for r in result.vmas:
        if not (verbose or is_device_mapping(r, layout)):
            continue
        other = " ".join(f"{k}:{v}" for k, v in r.entries_by_kind if k not in ("present", "protnone"))
        gup_lines.append((r, _main_segment(r.gup)))
        rows.add_row(
            str(r.vma.pid),
            safe_text(r.vma.comm),
            f"{r.vma.start:#x}-{r.vma.end:#x}",
            vm_flag_mnemonics(r.vma.flags, layout),
            safe_text(r.vma.ops or r.vma.file or "anon"),
            " ".join(f"{k}:{v}" for k, v in r.pages_by_kind) or "-",
            " ".join(f"{k}:{v}" for k, v in r.leaves_by_level) or "-",
            other or "-",
            str(r.special),
            str(r.devmap),
        )
    console.print(rows)
    shown = [(r, seg) for r, seg in gup_lines if seg is not None]
    if shown:
        console.print("[bold]GUP predicted[/] (per VMA, its first mapped segment; 'drgn-p2p explain PID ADDR' and JSON give every segment and why)")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ignore")
        grid.add_column(overflow="fold")
        for r, seg in shown:
            more = len(r.gup) - 1
            grid.add_row(
                str(r.vma.pid), f"{seg.start:#x}-{seg.end:#x}",
                escape(gup_summary(seg.predictions))
                + (f" [dim](+{more} segment{'s' if more > 1 else ''})[/]" if more > 0 else ""),
            )
        console.print(grid)
    if result.findings:
        console.print("[bold]Findings[/]")
        for group in group_findings(sorted(result.findings, key=lambda f: (-f.severity, f.rule, f.vma.pid, f.start))):
            print_finding(console, group.first, layout, result.suppression(group.first))
            if len(group.pids) > 1:
                _print_repeats(console, group)
    else:
        console.print("[green]No findings.[/]")
    console.print(escape(summary_text(result)))
    if result.not_applicable:
        for rule, reason in result.not_applicable.items():
            console.print(f"[dim]not applicable: {rule}: {reason}[/]")


def print_maps(console: Console, result, pid: int) -> None:
    """Every VMA of *pid* with smaps-style flags and page-kind counts (``drgn-p2p maps``)."""
    rows = table(f"pid {pid}", ("range", "VmFlags", "ops", "file", "pages by kind", "leaves", "S", "D"),
                 addresses=("range",))
    for r in result.vmas:
        rows.add_row(
            f"{r.vma.start:#x}-{r.vma.end:#x}",
            vm_flag_mnemonics(r.vma.flags, result.layout),
            safe_text(r.vma.ops),
            safe_text(r.vma.file),
            " ".join(f"{k}:{v}" for k, v in r.pages_by_kind),
            " ".join(f"{k}:{v}" for k, v in r.leaves_by_level),
            str(r.special),
            str(r.devmap),
        )
    console.print(rows)


def print_pgmaps(console: Console, pgmaps: Iterable[Dict[str, object]]) -> None:
    """The ``drgn-p2p pgmaps`` rows (as its JSON has them) as a table."""
    rows = table("dev_pagemaps", ("pgmap", "type", "range", "pages", "owner", "ops", "memmap", "mapped by (pages)"),
                 addresses=("pgmap", "range"))
    for row in pgmaps:
        rows.add_row(
            str(row["pgmap"]), str(row["type"]), f"{row['start']}-{row['end']}", str(row["pages"]),
            safe_text(row["owner"]), safe_text(row["ops"]),  # type: ignore[arg-type]
            "yes" if row["memmap_readable"] else "unreadable",
            safe_text(" ".join(f"{k}:{v}" for k, v in row["mapped_by"].items())),  # type: ignore[attr-defined]
        )
    console.print(rows)


def print_finding(console: Console, f: Finding, layout: Layout, suppressed: Optional[str] = None) -> None:
    """One finding as a short block: verdict, where, the entry, the argument
    (and, when a baseline suppresses it, why)."""
    what = f"{f.count} {f.first.level.label} leaves" if f.first else "whole VMA"
    verdict = f"[{_SEVERITY_STYLE[f.severity]}]{f.severity.label.upper()}[/]"
    if suppressed is not None:
        verdict = f"[dim]SUPPRESSED {f.severity.label}[/]"
    console.print(
        f"{verdict} [bold]{f.rule}[/]"
        f"  pid {f.vma.pid} ({safe_text(f.vma.comm)})  {f.start:#x}-{f.end:#x}  ({what})"
    )
    if suppressed is not None:
        console.print(f"  [dim]suppressed: {escape(suppressed)}[/]", soft_wrap=True)
    console.print(
        f"  VMA {f.vma.start:#x}-{f.vma.end:#x} " + escape(f"[{vm_flag_mnemonics(f.vma.flags, layout)}]")
        + f" {safe_text(f.vma.ops or f.vma.file or 'anon')}"
    )
    if f.first is not None:
        bits, cache = describe(f.first.raw, f.first.level, layout)
        page = ""
        if f.page is not None:
            page = f" → {f.page.kind.value}" + (f" ({safe_text(f.page.owner)})" if f.page.owner else "")
        pfn = f" pfn {f.first.pfn:#x}" if f.first.pfn is not None else ""
        console.print(
            f"  {f.first.kind.value} {f.first.raw:#018x} " + escape(f"[{' '.join(bits)}]")
            + (f" {cache}" if cache else "") + pfn + page
        )
    console.print(f"  {escape(f.message)}", soft_wrap=True)


def _print_repeats(console: Console, group, shown: int = 8) -> None:
    """The other processes of a group: how many, and the first few by pid."""
    others = [f for f in group.findings[1:] if f.vma.pid != group.first.vma.pid]
    pids = list(dict.fromkeys((f.vma.pid, f.vma.comm) for f in others))
    names = ", ".join(f"{pid} ({safe_text(comm)})" for pid, comm in pids[:shown])
    more = f", … {len(pids) - shown} more" if len(pids) > shown else ""
    console.print(
        f"  [dim]the same in {len(group.pids)} processes ({len(group.findings)} findings), also pid {names}{more}[/]",
        soft_wrap=True,
    )


def print_layout(console: Console, layout: Layout) -> None:
    """Print every layout value with how it was learned."""
    doc = layout_json(layout)
    table = Table(title=f"Kernel layout — {layout.release}", title_justify="left")
    table.add_column("fact")
    table.add_column("value", overflow="fold")
    table.add_column("learned from", overflow="fold")
    learned = doc["learned"]
    for name, value in doc["layout"].items():
        how = learned.get(name)
        if isinstance(value, dict) and name == "swap":
            for k, v in value.items():
                h = learned.get(f"swap.{k}")
                table.add_row(f"swap.{k}", str(v), f"{h['how']}: {h['detail']}" if h else "derived")
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(name, str(value), f"{how['how']}: {how['detail']}" if how else "")
    console.print(table)


def vma_at(doc: Mapping[str, Any], pid: int, addr: int) -> Optional[Mapping[str, Any]]:
    """The ``vmas`` entry of audit document *doc* (:func:`audit_json`) of
    process *pid* that contains address *addr*, or None."""
    for vma in doc.get("vmas", ()):
        if vma["pid"] == pid and int(vma["start"], 16) <= addr < int(vma["end"], 16):
            return vma
    return None
