# SPDX-License-Identifier: GPL-2.0-or-later
"""
``drgn-p2p diff``: small hand-written audit documents (each a real, schema-valid
``drgn-p2p/audit/1`` document: an empty audit of a lab kernel's layout with
hand-written VMAs and findings) compared by mapping kind.
"""

import copy
import json
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from click.testing import CliRunner
from report_checkers import check_audit_json, check_diff_json

from drgn_p2p.cli import cli
from drgn_p2p.diff import diff_audits, diff_json, load_audit, mapping_facts, mapping_kind
from drgn_p2p.errors import UsageError
from drgn_p2p.pipeline import AuditResult, select_rules
from drgn_p2p.report import audit_json

from .layouts import L61, L72

RW_SHARED = ["READ", "WRITE", "SHARED", "MAYREAD", "MAYWRITE", "MAYSHARE"]


def vma(pid: int, start: int, file: Optional[str], ops: Optional[str], flags: List[str], pages: Dict[str, int],
        runs: Optional[List[Dict]] = None) -> Dict:
    """One ``vmas`` entry as ``audit --json`` writes it (``runs`` as with ``--runs``)."""
    leaves: Dict[str, int] = {}
    for r in runs or []:
        leaves[r["level"]] = leaves.get(r["level"], 0) + r["count"]
    v = {
        "pid": pid, "comm": "holder", "start": hex(start), "end": hex(start + 0x200000), "flags": "0x0",
        "flag_names": flags, "pgoff": 0, "file": file, "ops": ops, "pages": pages,
        "entries": {"present": sum(r["count"] for r in runs or [])}, "leaves": leaves,
        "special": sum(r["count"] for r in runs or [] if r["special"]),
        "devmap": sum(r["count"] for r in runs or [] if r["devmap"]),
        "unreadable_tables": 0,
    }
    if runs is not None:
        v["runs"] = runs
    return v


def leaves(start: int, level: str, count: int, page: str, special: bool, devmap: bool, cache: str = "WB") -> Dict:
    return {
        "start": hex(start), "end": hex(start + count * (0x200000 if level == "pmd" else 0x1000)), "count": count,
        "level": level, "entry": "present", "raw": "0x8000000000000067", "pfn": "0x1000", "special": special,
        "devmap": devmap, "cache": cache, "page": page, "owner": None, "memmap_readable": True,
    }


def finding(rule: str, severity: str, v: Dict) -> Dict:
    keys = ("pid", "comm", "start", "end", "flags", "flag_names", "pgoff", "file", "ops")
    return {
        "rule": rule, "severity": severity, "pid": v["pid"], "comm": v["comm"], "start": v["start"], "end": v["end"],
        "count": 1, "message": "m", "vma": {k: v[k] for k in keys}, "level": None, "entry": None, "raw": None,
        "pfn": None, "bits": None, "cache": None, "page": None, "evidence": {},
    }


def document(layout, vmas: List[Dict], findings: List[Dict] = ()) -> Dict:
    active, skipped = select_rules(layout)
    doc = audit_json(AuditResult(layout=layout, not_applicable=skipped, rules=[r.id for r in active]), layout)
    doc["vmas"] = list(vmas)
    doc["findings"] = list(findings)
    check_audit_json(doc)
    return doc


def devdax(pid: int, start: int, devmap: bool) -> Dict:
    return vma(pid, start, "/dev/dax0.0", "dax_vm_ops", RW_SHARED + ["HUGEPAGE"], {"devdax": 512},
               [leaves(start, "pmd", 1, "devdax", special=False, devmap=devmap)])


def fsdax(pid: int, start: int, tmp: str, special: bool, devmap: bool) -> Dict:
    return vma(pid, start, f"/tmp/qp-fsdax.{tmp}/held", "ext4_dax_vm_ops", RW_SHARED, {"fsdax": 16},
               [leaves(start, "pte", 16, "fsdax", special=special, devmap=devmap)])


def bar(pid: int, start: int, flags: List[str], cache: str) -> Dict:
    return vma(pid, start, "/sys/devices/pci0000:00/0000:00:03.0/resource2", "kernfs_vm_ops",
               RW_SHARED + flags, {"no-memmap": 16}, [leaves(start, "pte", 16, "no-memmap", True, False, cache)])


def pair():
    """A 6.1-like and a 7.2-like audit of the same mappings, on other PIDs and addresses."""
    a = document(L61, [
        devdax(100, 0x7F00_0000_0000, devmap=True),
        fsdax(101, 0x7F10_0000_0000, "RaB66U", special=True, devmap=True),
        bar(102, 0x7F20_0000_0000, ["PFNMAP", "IO", "PAT"], "UC-"),
    ])
    b_bar = bar(202, 0x7E20_0000_0000, ["PFNMAP", "IO"], "UC-")
    b = document(L72, [
        devdax(200, 0x7E00_0000_0000, devmap=False),
        fsdax(201, 0x7E10_0000_0000, "x9Zk2Q", special=False, devmap=False),
        b_bar,
        vma(203, 0x7E30_0000_0000, None, None, ["READ", "WRITE"], {"device-private": 4},
            [leaves(0x7E30_0000_0000, "pte", 4, "device-private", False, False)]),
    ], [finding("pfnmap-not-special", "error", b_bar)])
    return a, b


def changes_of(d, file_part: str) -> Dict[str, tuple]:
    (c,) = [c for c in d.changed if file_part in c.kind.file]
    return {f.field: (f.removed, f.added) for f in c.changes}


def test_mapping_kind_ignores_addresses_pids_and_mktemp_names() -> None:
    a = fsdax(1, 0x1000, "RaB66U", True, True)
    b = fsdax(2, 0x9000_0000, "x9Zk2Q", True, True)
    assert mapping_kind(a) == mapping_kind(b)
    assert mapping_kind(a).file == "/tmp/qp-fsdax.XXXXXX/held"
    # A 6-letter lower-case extension is a name, not a mktemp suffix; a deleted file is the file.
    assert mapping_kind({**a, "file": "/data/x.backup"}).file == "/data/x.backup"
    assert mapping_kind({**a, "file": "/data/x (deleted)"}).file == "/data/x"
    # A compiler's static-symbol suffix is not part of the vm_ops name.
    assert mapping_kind({**a, "ops": "dummy_vm_ops.251"}).ops == "dummy_vm_ops"
    anon = vma(1, 0x1000, None, None, ["READ", "WRITE"], {"ram": 1})
    assert (mapping_kind(anon).file, mapping_kind(anon).share, mapping_kind(anon).prot) == ("anon", "private", "rw-")


def test_devmap_removal_and_dax_changes() -> None:
    a, b = pair()
    d = diff_audits(a, b)
    assert changes_of(d, "/dev/dax") == {"bits": (("pmd devmap",), ())}
    assert changes_of(d, "qp-fsdax") == {"bits": (("pte devmap", "pte special"), ())}
    layout = {name: (va, vb) for name, va, vb in d.layout}
    assert layout["devmap_bit"] == (L61.devmap_bit, None) and L61.devmap_bit is not None
    assert layout["has_pmd_special"] == (False, True)
    rules = {r: (wa, wb) for r, wa, wb in d.rules}
    assert rules["devmap-not-dax"][0] is None and "devmap" in rules["devmap-not-dax"][1]


def test_flags_verdicts_and_cache_changes() -> None:
    a, b = pair()
    d = diff_audits(a, b)
    assert changes_of(d, "resource2") == {"flags": (("PAT",), ()), "verdicts": ((), ("error pfnmap-not-special",))}
    b2 = copy.deepcopy(b)
    for v in b2["vmas"]:
        for r in v.get("runs", []):
            if r["page"] == "no-memmap":
                r["cache"] = "WC"
    assert changes_of(diff_audits(a, b2), "resource2")["cache"] == (("pte UC-",), ("pte WC",))


def test_kinds_in_one_audit_only() -> None:
    a, b = pair()
    d = diff_audits(a, b)
    assert [k.file for k, _ in d.only_b] == ["anon"]
    assert d.only_b[0][1].page_kinds == ("device-private",)
    assert d.only_a == ()
    back = diff_audits(b, a)
    assert [k.file for k, _ in back.only_a] == ["anon"]


def test_same_audit_has_no_changes_and_other_pids_do_not_matter() -> None:
    a, _ = pair()
    moved = copy.deepcopy(a)
    for v in moved["vmas"]:
        v["pid"] += 1000
        v["start"] = hex(int(v["start"], 16) + 0x1000_0000)
    d = diff_audits(a, moved)
    assert not (d.changed or d.only_a or d.only_b or d.layout or d.rules)
    assert len(d.unchanged) == 3


def test_without_runs_bits_compare_without_levels() -> None:
    a, b = pair()
    for doc in (a, b):
        for v in doc["vmas"]:
            del v["runs"]
    d = diff_audits(a, b)
    assert changes_of(d, "/dev/dax") == {"bits": (("devmap",), ())}
    assert "cache" not in changes_of(d, "resource2")


def test_facts_are_sets_over_the_kinds_vmas() -> None:
    a, _ = pair()
    a["vmas"].append(devdax(300, 0x7F40_0000_0000, devmap=False))
    facts = mapping_facts(a)
    (kind,) = [k for k in facts if k.ops == "dax_vm_ops"]
    assert facts[kind].vmas == 2 and facts[kind].bits == ("pmd devmap",) and facts[kind].levels == ("pmd",)


def test_json_validates_against_the_shipped_schema() -> None:
    a, b = pair()
    doc = diff_json(diff_audits(a, b))
    check_diff_json(doc)
    assert doc["schema"] == "drgn-p2p/diff/1"
    check_diff_json(diff_json(diff_audits(a, a)))


def test_json_schema_rejects_what_is_not_a_diff() -> None:
    import jsonschema

    a, b = pair()
    doc = diff_json(diff_audits(a, b))
    for broken in ({**doc, "schema": "drgn-p2p/audit/1"}, {k: v for k, v in doc.items() if k != "changed"},
                   {**doc, "changed": [{**doc["changed"][0], "changes": []}]}):
        with pytest.raises(jsonschema.ValidationError):
            check_diff_json(broken)


def _write(tmp_path: Path, name: str, doc) -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_cli_table_json_and_exit_codes(tmp_path) -> None:
    a, b = pair()
    pa, pb = _write(tmp_path, "a.json", a), _write(tmp_path, "b.json", b)
    runner = CliRunner()
    text = runner.invoke(cli, ["diff", pa, pb])
    assert text.exit_code == 1, text.output
    assert "-pmd devmap" in text.output and "/dev/dax0.0" in text.output and "devmap_bit" in text.output
    js = runner.invoke(cli, ["diff", pa, pb, "--json"])
    assert js.exit_code == 1
    check_diff_json(json.loads(js.output))
    same = runner.invoke(cli, ["diff", pa, pa])
    assert same.exit_code == 0 and "0 mapping kinds changed" in same.output


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("not json", "is not JSON"),
    ({"schema": "drgn-p2p/lab-run/1"}, "is not a drgn-p2p audit document"),
    ([1, 2], "is not a drgn-p2p audit document"),
    ({"schema": "drgn-p2p/audit/2", "vmas": []}, "is a drgn-p2p/audit/2 document"),
    ({"schema": "drgn-p2p/audit/1", "vmas": [], "kernel": {}, "layout": {}}, "'findings' is missing"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, content, message) -> None:
    a, _ = pair()
    good = _write(tmp_path, "a.json", a)
    bad = str(tmp_path / "missing.json") if content is None else _write(tmp_path, "bad.json", content)
    with pytest.raises(UsageError, match=message):
        load_audit(bad)
    result = CliRunner().invoke(cli, ["diff", good, bad])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and message.split("'")[0].strip() in result.output


def test_directory_is_bad_input(tmp_path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        load_audit(str(tmp_path))
