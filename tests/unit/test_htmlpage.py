# SPDX-License-Identifier: GPL-2.0-or-later
"""``audit --format html``: the strips laid out from an audit result, the page
parsed with html.parser (well nested, nothing external, every VMA drawn, names
escaped), through the real command line, and rendered by a real browser engine
(wkhtmltoimage, QtWebKit, installed by scripts/setup) to a PNG that decodes and
is not blank."""

from pathlib import Path
from typing import Tuple

from report_checkers import check_self_contained, parse_html, png_pixels, screenshot

from drgn_p2p.formats import render
from drgn_p2p.htmlpage import KIND_COLOURS, audit_html, strips
from drgn_p2p.pipeline import VmaReport
from drgn_p2p.records import Severity

from .layouts import L72
from .test_formats import HOSTILE, _run, _vma, audit_of, bar_error, fake_audit, p2pmem_info  # noqa: F401

TIB = 1 << 40


def _report(vma, pages: Tuple[Tuple[str, int], ...], leaves: Tuple[Tuple[str, int], ...], special=0) -> VmaReport:
    return VmaReport(vma=vma, pages_by_kind=pages, entries_by_kind=(("present", sum(n for _, n in leaves)),),
                     leaves_by_level=leaves, special=special, devmap=0, unreadable_tables=0)


def sample():
    """pid 1: a 64 TiB anonymous reservation, a one-page BAR (PFNMAP, an
    error), a 2 MiB devdax VMA of one PMD leaf; pids 1-3: a p2pmem-like mapping (info)."""
    bar = bar_error(L72)
    infos = p2pmem_info(L72, [1, 2, 3])
    big = _vma(L72, 1, "holder", "READ", "WRITE", start=0x1000_0000_0000, end=0x1000_0000_0000 + 64 * TIB)
    bar_vma = bar[0].vma
    dax = _vma(L72, 1, "holder", "READ", "WRITE", "SHARED", "HUGEPAGE", start=0x7F00_0020_0000, end=0x7F00_0040_0000)
    result = audit_of(L72, bar + infos)
    result.vmas = [
        _report(big, (), ()),
        _report(bar_vma, (("no-memmap", 16),), (("pte", 16),)),
        _report(dax, (("devdax", 512),), (("pmd", 1),)),
    ] + [_report(f.vma, (("ram", 2),), (("pte", 2),)) for f in infos]
    result.stats.processes, result.stats.vmas = 3, len(result.vmas)
    return result, bar_vma, dax, big


def test_strips_lay_out_by_address_kind_level_and_findings() -> None:
    result, bar_vma, dax, big = sample()
    out = strips(result)
    assert [s.pid for s in out] == [1, 2, 3]
    one = out[0]
    assert [s.report.vma.start for s in one.segments] == sorted(s.report.vma.start for s in one.segments)
    seg = {s.report.vma.start: s for s in one.segments}
    assert (seg[big.start].kind, seg[big.start].level, seg[big.start].device) == ("empty", "", False)
    assert (seg[bar_vma.start].kind, seg[bar_vma.start].level, seg[bar_vma.start].device) == ("no-memmap", "pte", True)
    assert seg[bar_vma.start].worst == Severity.ERROR and len(seg[bar_vma.start].findings) == 1
    assert (seg[dax.start].kind, seg[dax.start].level, seg[dax.start].device) == ("devdax", "pmd", True)
    # A log scale: 64 TiB is wider than 2 MiB, wider than 64 KiB, but not by 2^31; no overlap.
    w = {k: s.width for k, s in seg.items()}
    assert w[big.start] > w[dax.start] > w[bar_vma.start] >= 3 and w[big.start] < 40 * w[bar_vma.start]
    for a, b in zip(one.segments, one.segments[1:]):
        assert b.x >= a.x + a.width
    # The hole of ~2^47 bytes between the reservation and the BAR is drawn as a break.
    # (and the one of ~1 TiB between the devdax VMA and the p2pmem mapping).
    assert len(one.holes) == 2 and seg[big.start].x + w[big.start] < one.holes[0] < seg[bar_vma.start].x
    assert [s.worst for s in out[1].segments] == [Severity.INFO]


def test_page_parses_and_is_self_contained() -> None:
    result, bar_vma, dax, big = sample()
    page = audit_html(result)
    p = parse_html(page)
    check_self_contained(p, page)
    drawn = {a["data-start"]: a for t, a in p.tags if t == "g" and "data-start" in a}
    assert set(drawn) == {f"{r.vma.start:#x}" for r in result.vmas}
    assert {k for k, a in drawn.items() if a["class"] == "device"} == {
        f"{r.vma.start:#x}" for r in result.vmas if r.vma.start != big.start}
    assert drawn[f"{dax.start:#x}"]["data-level"] == "pmd" and drawn[f"{dax.start:#x}"]["data-kind"] == "devdax"
    text = "".join(p.text)
    assert "no-memmap-not-special" in text and "the same in 3 processes: 1, 2, 3" in text
    assert f"{bar_vma.start:#x}-{bar_vma.end:#x}" in text  # the error's address, and the tooltip's
    assert all(k in text for k in KIND_COLOURS)  # the legend


def test_page_escapes_names_and_marks_suppressed() -> None:
    result, *_ = sample()
    bar = result.findings[0]
    object.__setattr__(bar.vma, "comm", HOSTILE)
    result.suppressed = {id(bar): "known <BAR> & fine"}
    page = audit_html(result)
    p = parse_html(page)
    assert "<b>" not in page and "\x1b" not in page and "\x01" not in page
    rows = [a.get("class") for t, a in p.tags if t == "tr" and a.get("class")]
    assert rows[0] == "suppressed" and "suppressed: known <BAR> & fine" in "".join(p.text)


def test_cli_html_to_file(fake_audit, capsys, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "audit.html"
    code, stdout, err = _run(["audit", "-c", "/x", "--format", "html", "-o", str(out)], capsys)
    assert (code, stdout, err) == (1, "", "")
    page = out.read_text()
    check_self_contained(parse_html(page), page)
    assert render(audit_of(L72, bar_error(L72), [_vma(L72, 1, "holder")]), "html") == page


def test_page_renders_in_a_browser(tmp_path: Path) -> None:
    result, *_ = sample()
    page = tmp_path / "audit.html"
    page.write_text(audit_html(result))
    width, height, colours = png_pixels(screenshot(page, tmp_path / "audit.png"))
    assert width == 1000 and 500 < height < 5000
    # White, text, and the fills: the error's red, the BAR's no-memmap blue, devdax's orange at least.
    assert len(colours) > 20
    for fill in ("#d7191c", KIND_COLOURS["no-memmap"], KIND_COLOURS["devdax"]):
        assert bytes.fromhex(fill[1:]) in colours, fill


def test_png_decoder_sees_a_blank_page_as_blank(tmp_path: Path) -> None:
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    width, height, colours = png_pixels(screenshot(page, tmp_path / "blank.png", width=200))
    assert width == 200 and colours == {b"\xff\xff\xff"}
