# SPDX-License-Identifier: GPL-2.0-or-later
"""
The audit as one HTML page
--------------------------

``drgn-p2p audit --format html``: one self-contained page (inline CSS and SVG,
no script, no network) with the findings and, per process, a strip of its
address space. :func:`strips` lays the audit's VMA reports
(:class:`~drgn_p2p.pipeline.VmaReport`) out as records — each VMA a segment
whose width grows with the logarithm of its size, so that a one-page device
VMA stays visible next to a 128 TiB reservation — and :func:`audit_html`
draws them: fill colour = the page kind with the most pages, stripes = the
largest leaf level (PMD diagonal, PUD cross-hatched), a thick outline and a
triangle under device mappings (:func:`~drgn_p2p.report.is_device_mapping`),
a dot over VMAs with findings in the colour of the worst. Every segment has an
SVG ``<title>`` tooltip with its range, flags, pages by kind and leaves by level.
"""

import html
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .coalesce import group_findings
from .formats import finding_lines
from .records import Finding, Severity
from .report import is_device_mapping, printable, summary_text, vm_flag_mnemonics

__all__ = ("Segment", "Strip", "strips", "audit_html", "KIND_COLOURS")

#: Fill colour of each page kind (``PageKind`` values); ``empty``: no present leaf.
KIND_COLOURS = {
    "ram": "#c6dbef", "zero-page": "#e5e5e5", "huge-zero": "#cfcfcf",
    "fsdax": "#fd8d3c", "devdax": "#d94801", "device-generic": "#fdd0a2",
    "p2pdma": "#31a354", "device-private": "#6a51a3", "device-coherent": "#9e9ac8",
    "no-memmap": "#08519c", "none": "#f7f7f7", "empty": "#ffffff",
}
_SEVERITY_COLOURS = {Severity.ERROR: "#d7191c", Severity.WARNING: "#f39c12", Severity.INFO: "#2c7fb8"}
_LEVELS = ("pte", "pmd", "pud")

#: Strip geometry, in SVG pixels.
_HEIGHT = 22
_MIN_WIDTH = 3.0
_PX_PER_DOUBLING = 5.0
_GAP = 2.0
_BIG_GAP = 10.0  # a hole of at least 1 GiB between two VMAs
_BIG_HOLE = 1 << 30


@dataclass(frozen=True)
class Segment:
    """One ``struct vm_area_struct`` on its process's strip."""

    report: object  # VmaReport
    x: float
    width: float
    kind: str  # the page kind with the most 4 KiB pages, "empty" when none is present
    level: str  # the largest level with a present leaf ("pte", "pmd", "pud"), "" when none
    device: bool
    findings: Tuple[Finding, ...]
    worst: Optional[Severity]  # of the findings that are not suppressed


@dataclass(frozen=True)
class Strip:
    """One process's address space: its VMAs by address, holes compressed."""

    pid: int
    comm: str
    segments: Tuple[Segment, ...]
    holes: Tuple[float, ...]  # x of each hole of at least 1 GiB
    width: float

    @property
    def devices(self) -> int:
        return sum(1 for s in self.segments if s.device)


def _width(size: int) -> float:
    """Drawn width of a VMA of *size* bytes: one doubling, a few pixels."""
    return _MIN_WIDTH + _PX_PER_DOUBLING * math.log2(max(size, 4096) / 4096)


def strips(result) -> List[Strip]:
    """The audit's VMA reports as one strip per process: processes with device
    mappings or findings first, then by pid."""
    layout = result.layout
    by_vma: Dict[Tuple[int, int], List[Finding]] = {}
    for f in result.findings:
        by_vma.setdefault((f.vma.pid, f.vma.start), []).append(f)
    by_pid: Dict[int, list] = {}
    for r in result.vmas:
        by_pid.setdefault(r.vma.pid, []).append(r)
    out = []
    for pid, reports in by_pid.items():
        reports.sort(key=lambda r: r.vma.start)
        x, prev_end, segments, holes = 0.0, None, [], []
        for r in reports:
            if prev_end is not None:
                if r.vma.start - prev_end >= _BIG_HOLE:
                    holes.append(x + _BIG_GAP / 2)
                    x += _BIG_GAP
                else:
                    x += _GAP
            pages = dict(r.pages_by_kind)
            leaves = dict(r.leaves_by_level)
            found = tuple(by_vma.get((pid, r.vma.start), ()))
            counted = [f.severity for f in found if result.suppression(f) is None]
            width = _width(r.vma.end - r.vma.start)
            segments.append(Segment(
                report=r, x=x, width=width,
                kind=max(pages, key=lambda k: pages[k]) if pages else "empty",
                level=next((lv for lv in reversed(_LEVELS) if leaves.get(lv)), ""),
                device=is_device_mapping(r, layout), findings=found, worst=max(counted, default=None),
            ))
            x += width
            prev_end = r.vma.end
        out.append(Strip(pid=pid, comm=reports[0].vma.comm, segments=tuple(segments), holes=tuple(holes), width=x))
    out.sort(key=lambda s: (not (s.devices or any(g.findings for g in s.segments)), s.pid))
    return out


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h2 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 3px 7px; vertical-align: top; text-align: left; }
th { background: #eee; }
pre { margin: 0; white-space: pre-wrap; font: 12px/1.3 ui-monospace, monospace; }
.proc { margin: 0.6em 0; }
.proc .name { font-family: ui-monospace, monospace; font-size: 13px; }
.strip { overflow-x: auto; }
.error { background: #f9dede; } .warning { background: #fff1d6; } .info { background: #e6eef9; }
.suppressed { background: #f3f3f3; color: #666; }
.legend span.sw { display: inline-block; width: 14px; height: 14px; border: 1px solid #888; vertical-align: middle; margin: 0 3px 0 10px; }
"""

_DEFS = (
    '<defs>'
    '<pattern id="lv-pmd" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    '<rect width="2" height="6" fill="#000" fill-opacity="0.45"/></pattern>'
    '<pattern id="lv-pud" width="6" height="6" patternUnits="userSpaceOnUse">'
    '<path d="M0 0L6 6M6 0L0 6" stroke="#000" stroke-opacity="0.55" stroke-width="1.2"/></pattern>'
    '</defs>'
)


def _tooltip(seg: Segment, layout) -> str:
    r, vma = seg.report, seg.report.vma
    lines = [
        f"{vma.start:#x}-{vma.end:#x} ({(vma.end - vma.start) // 1024} KiB)",
        f"[{vm_flag_mnemonics(vma.flags, layout)}] {printable(vma.ops or vma.file or 'anon')}",
        "pages: " + (" ".join(f"{k}:{v}" for k, v in r.pages_by_kind) or "none present"),
        "leaves: " + (" ".join(f"{k}:{v}" for k, v in r.leaves_by_level) or "none"),
        f"special {r.special}, devmap {r.devmap}" + (" — device mapping" if seg.device else ""),
    ]
    lines += [f"{f.severity.label}: {f.rule}" for f in seg.findings]
    return html.escape("\n".join(lines))


def _svg(strip: Strip, layout) -> str:
    top = 12
    height = top + _HEIGHT + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{strip.width + 4:.0f}" height="{height}" '
           f'viewBox="-2 0 {strip.width + 4:.1f} {height}">']
    for x in strip.holes:
        out.append(f'<path d="M{x - 2:.1f} {top + _HEIGHT}L{x + 2:.1f} {top}" stroke="#999"/>')
    for seg in strip.segments:
        css = "device" if seg.device else "vma"
        stroke = 'stroke="#000" stroke-width="2"' if seg.device else 'stroke="#888" stroke-width="0.5"'
        vma = seg.report.vma
        out.append(f'<g class="{css}" data-pid="{vma.pid}" data-start="{vma.start:#x}" data-end="{vma.end:#x}" '
                   f'data-kind="{seg.kind}" '
                   f'data-level="{seg.level}"><title>{_tooltip(seg, layout)}</title>')
        out.append(f'<rect x="{seg.x:.1f}" y="{top}" width="{seg.width:.1f}" height="{_HEIGHT}" '
                   f'fill="{KIND_COLOURS.get(seg.kind, "#fff")}" {stroke}/>')
        if seg.level in ("pmd", "pud"):
            out.append(f'<rect x="{seg.x:.1f}" y="{top}" width="{seg.width:.1f}" height="{_HEIGHT}" '
                       f'fill="url(#lv-{seg.level})"/>')
        mid = seg.x + seg.width / 2
        if seg.device:
            out.append(f'<path d="M{mid - 4:.1f} {height}L{mid:.1f} {top + _HEIGHT + 2}L{mid + 4:.1f} {height}Z" fill="#000"/>')
        if seg.findings:
            colour = _SEVERITY_COLOURS[seg.worst] if seg.worst else "#999"
            out.append(f'<circle cx="{mid:.1f}" cy="6" r="5" fill="{colour}" stroke="#000" stroke-width="0.5"/>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _legend() -> str:
    e = html.escape
    kinds = "".join(f'<span class="sw" style="background:{c}"></span>{e(k)}' for k, c in KIND_COLOURS.items())
    swatch = '<svg width="16" height="14"><rect width="16" height="14" fill="#c6dbef"/>{}</svg>'
    levels = " · ".join(
        f"{lv}: {how} " + swatch.format(f'<rect width="16" height="14" fill="url(#lv-{lv})"/>' if lv != "pte" else "")
        for lv, how in (("pte", "plain"), ("pmd", "diagonal"), ("pud", "cross-hatched"))
    )
    marks = " · ".join(f'<span style="color:{c}">●</span> {s.label}' for s, c in _SEVERITY_COLOURS.items())
    return (f'<p class="legend">Colour = page kind with the most pages:{kinds}</p>'
            f'<p class="legend">Leaf level: {levels} · ▲ and thick outline: device or PFN mapping · '
            f'dot: findings, the worst {marks}. Width grows with log₂ of the size; a slash is a hole of 1 GiB or more. '
            'Hover a VMA for its details.</p>')


def audit_html(result, fail_on: Severity = Severity.ERROR) -> str:
    """The audit as one self-contained HTML page."""
    layout = result.layout
    e = html.escape
    title = f"drgn-p2p audit of {printable(layout.release)} ({layout.arch})"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>",
           f'<svg width="0" height="0" style="position:absolute">{_DEFS}</svg>', f"<h1>{e(title)}</h1>",
           f"<p>{e(summary_text(result))}; failing on {fail_on.label}.</p>"]
    for vma, fault in result.faults:
        out.append(f"<p class=\"warning\">unreadable: pid {vma.pid} {fault.level.label} table at {fault.va:#x}: "
                   f"{e(printable(fault.message))}</p>")
    out.append("<h2>Findings</h2>")
    ordered = sorted(result.findings, key=lambda f: (-f.severity, f.rule, f.vma.pid, f.start))
    if not ordered:
        out.append("<p>No findings.</p>")
    else:
        out.append("<table><tr><th>severity</th><th>rule</th><th>where</th><th>evidence</th></tr>")
        for group in group_findings(ordered):
            f = group.first
            reason = result.suppression(f)
            css = "suppressed" if reason is not None else f.severity.label
            label = f"suppressed {f.severity.label}" if reason is not None else f.severity.label
            lines = ([f"suppressed: {printable(reason)}"] if reason is not None else []) + finding_lines(f, layout)
            if len(group.pids) > 1:
                lines.append(f"the same in {len(group.pids)} processes: "
                             + ", ".join(str(p) for p in group.pids))
            out.append(f'<tr class="{css}"><td>{e(label)}</td><td>{e(f.rule)}</td>'
                       f"<td>pid {f.vma.pid} ({e(printable(f.vma.comm))})<br>{f.start:#x}-{f.end:#x}</td>"
                       f"<td><pre>{e(chr(10).join(lines))}</pre></td></tr>")
        out.append("</table>")
    out += ["<h2>Address spaces</h2>", _legend()]
    for strip in strips(result):
        out.append(f'<div class="proc" data-pid="{strip.pid}"><div class="name">pid {strip.pid} '
                   f'({e(printable(strip.comm))}): {len(strip.segments)} VMAs, {strip.devices} device or PFN</div>'
                   f'<div class="strip">{_svg(strip, layout)}</div></div>')
    if result.not_applicable:
        out.append("<h2>Rules that cannot apply</h2><ul>")
        out += [f"<li>{e(rule)}: {e(printable(reason))}</li>" for rule, reason in result.not_applicable.items()]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
