# SPDX-License-Identifier: GPL-2.0-or-later
"""The kind × kernel matrix: its document, merging per-kernel runs, and its
Markdown and self-contained HTML pages."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from drgn_p2p.cli import cli
from drgn_p2p.lab import matrix

LAYOUT = {"arch": "x86_64", "sme_mask": "0x0", "pfn_mask": "0xffffffffff000", "devmap_bit": 58, "levels": 5,
          "has_pmd_special": False, "has_pud_special": False, "dax_refcounted": False}
#: A BAR mapped by remap_pfn_range(): _PAGE_PRESENT|RW|USER|PCD|ACCESSED|DIRTY|SPECIAL (bit 9), PFN 0xfe000.
BAR_PTE = 0x80000000FE000277


def _audit(vmas, findings=()) -> dict:
    return {"layout": LAYOUT, "vmas": vmas, "findings": list(findings)}


def _vma(pid, start, end, flags, pages, leaves, runs, special=0):
    return {"pid": pid, "start": hex(start), "end": hex(end), "flag_names": flags, "ops": None, "pages": pages,
            "entries": {"present": sum(leaves.values())}, "leaves": leaves, "special": special, "devmap": 0,
            "runs": runs}


def _entry(kver="6.1.0-50-amd64") -> dict:
    bar = _vma(100, 0x7F0000000000, 0x7F0000200000, ["READ", "WRITE", "SHARED", "IO", "PFNMAP", "DONTEXPAND"],
               {"no-memmap": 512}, {"pte": 512},
               [{"entry": "present", "level": "pte", "raw": hex(BAR_PTE)}], special=512)
    anon = _vma(101, 0x7E0000000000, 0x7E0000004000, ["READ", "WRITE"], {"ram": 4}, {"pte": 4},
                [{"entry": "present", "level": "pte", "raw": "0x8000000001234067"}])
    finding = {"severity": "warning", "rule": "some-rule", "pid": 101, "vma": {"start": anon["start"]}}
    mappings = [{"kind": "pcibar", "expect": "pfnmap", "pid": 100, "addr": 0x7F0000001000},
                {"kind": "anon", "expect": "anon", "pid": 101, "addr": 0x7E0000000000}]
    return matrix.kernel_entry(kver, mappings, {"p2pdma": "lacks CONFIG_PCI_P2PDMA", "fsdax": "x"}, {"fsdax": "ndctl failed"},
                               _audit([bar, anon], [finding]))


def test_an_entry_holds_each_mapping_as_the_audit_saw_it():
    entry = _entry()
    bar, anon = entry["mappings"]
    assert bar["shape"] == "pcibar" and bar["pages"] == {"no-memmap": 512} and bar["special"] == 512
    assert any("SPECIAL" in b.split() for b in bar["bits"]), bar["bits"]
    assert anon["findings"] == [{"severity": "warning", "rule": "some-rule"}]
    assert entry["skipped"] == {"p2pdma": "lacks CONFIG_PCI_P2PDMA"} and entry["failed"] == {"fsdax": "ndctl failed"}
    assert entry["layout"]["devmap_bit"] == 58


def test_a_mapping_the_audit_lacks_is_marked():
    entry = matrix.kernel_entry("k", [{"kind": "anon", "expect": "anon", "pid": 7, "addr": 0x1000}], {}, {},
                                _audit([]))
    assert entry["mappings"] == [{"shape": "anon", "expect": "anon", "missing": True}]
    assert "failed" in matrix.render_markdown(matrix.merge([{"schema": matrix.SCHEMA, "kernels": {"k": entry}}]))


def test_runs_of_several_jobs_merge_in_kernel_order():
    one = {"schema": matrix.SCHEMA, "kernels": {"newest": _entry("7.2")}}
    two = {"schema": matrix.SCHEMA, "kernels": {"6.1": _entry("6.1")}}
    doc = matrix.merge([one, two])
    assert list(doc["kernels"]) == ["6.1", "newest"]
    assert matrix.rows(doc) == ["pcibar", "anon", "p2pdma", "fsdax"]


def test_markdown_has_a_row_per_kind_and_a_column_per_kernel():
    doc = matrix.merge([{"schema": matrix.SCHEMA, "kernels": {"6.1": _entry("6.1"), "newest": _entry("7.2")}}])
    md = matrix.render_markdown(doc)
    table = [line for line in md.splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `([^`]+)`", line).group(1) for line in table] == ["pcibar", "anon", "p2pdma", "fsdax"]
    assert all(line.count(" | ") == 2 for line in table)
    bar = table[0]
    assert "no-memmap 512" in bar and "pte×512" in bar and "PFNMAP" in bar and "— clean" in bar
    assert "warning `some-rule`" in table[1]
    assert "*skipped: lacks CONFIG_PCI_P2PDMA*" in table[2] and "*failed: setup failed: ndctl failed*" in table[3]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.refs = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td":
            self.cells.append(attrs.get("class"))
        self.refs += [v for k, v in attrs.items() if k in ("src", "href")]


def test_html_is_self_contained_and_coloured_by_verdict():
    doc = matrix.merge([{"schema": matrix.SCHEMA, "kernels": {"6.1": _entry("6.1")}}])
    page = matrix.render_html(doc)
    parser = _Page()
    parser.feed(page)
    assert parser.refs == [] and "<script" not in page and "http" not in page
    assert ["clean", "warning", "skipped", "failed"] == [c for c in parser.cells if c not in (None, "kind")]


def test_lab_matrix_merge_renders_without_booting(tmp_path: Path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"schema": matrix.SCHEMA, "kernels": {"6.1": _entry("6.1")}}))
    b.write_text(json.dumps({"schema": matrix.SCHEMA, "kernels": {"newest": _entry("7.2")}}))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["lab", "matrix", "--merge", str(a), "--merge", str(b), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert list(json.loads((out / "matrix.json").read_text())["kernels"]) == ["6.1", "newest"]
    assert (out / "matrix.md").read_text() == matrix.render_markdown(matrix.load_all([str(a), str(b)]))
    assert (out / "matrix.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("content, message", [
    (None, r"error: cannot read .*/m\.json: No such file or directory"),
    ("not json", r"error: .*/m\.json is not JSON"),
    ('{"schema": "drgn-p2p/audit/1"}', r"error: .*/m\.json is not a drgn-p2p/matrix/1 document"),
])
def test_lab_matrix_merge_of_bad_input_is_one_line(tmp_path: Path, content, message):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    r = CliRunner().invoke(cli, ["lab", "matrix", "--merge", str(path)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert re.search(message, r.output.replace("\n", "")), r.output


def test_lab_matrix_merge_takes_the_files_after_one_flag(tmp_path: Path):
    """``--merge matrix-*.json``, as a shell glob gives them (and repeated ``--merge FILE`` still works)."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"schema": matrix.SCHEMA, "kernels": {"6.1": _entry("6.1")}}))
    b.write_text(json.dumps({"schema": matrix.SCHEMA, "kernels": {"newest": _entry("7.2")}}))
    r = CliRunner().invoke(cli, ["lab", "matrix", "--merge", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.output
    assert list(json.loads(r.stdout)["kernels"]) == ["6.1", "newest"]
    for args, message in ((["--merge"], "--merge takes the matrix documents"),
                          ([str(a)], "FILES go with --merge"),
                          (["--merge", str(a), "--kernel", "6.1"], "give either --kernel or --merge")):
        r = CliRunner().invoke(cli, ["lab", "matrix", *args])
        assert r.exit_code == 2 and message in r.output, r.output
