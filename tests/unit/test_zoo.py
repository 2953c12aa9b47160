# SPDX-License-Identifier: GPL-2.0-or-later
"""The zoo: its scenarios' plan (shared devices, release floors) and its document and rendering."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

from drgn_p2p.lab import proof, scenarios, zoo

GUEST = Path(scenarios.__file__).resolve().parent / "guest"

LAYOUT = {"arch": "x86_64", "sme_mask": "0x0", "pfn_mask": "0xffffffffff000", "devmap_bit": None}


def _kernel(kver: str, *options: str) -> SimpleNamespace:
    return SimpleNamespace(kver=kver, config={opt: "y" for opt in options})


def test_every_zoo_shape_has_a_guest_function_a_holder_mode_and_a_description():
    script = (GUEST / "scenarios.sh").read_text()
    for s in scenarios.ZOO:
        assert re.search(rf"^scn_{s.name.replace('-', '_')}\(\)", script, re.M), s.name
        assert s.name in zoo.SHAPES, s.name
        assert s in scenarios.SCENARIOS
        assert f"scenario:{s.name}" in proof.CONTROL_DOMAINS, s.name
    assert set(zoo.SHAPES) == {s.name for s in scenarios.ZOO}


def test_a_device_two_scenarios_share_is_given_once():
    kernel = _kernel("6.12.1", "CONFIG_PCI_P2PDMA", "CONFIG_BLK_DEV_NVME")
    plan = scenarios.plan(kernel, ["p2pdma", "p2pdma-ro"])
    assert plan.qemu_args() == ([], ["-device", "nvme,id=qpnvme0,serial=qpnvme0,cmb_size_mb=64"])


def test_a_shape_newer_than_the_kernel_is_skipped_with_its_release():
    plan = scenarios.plan(_kernel("6.1.0-50-amd64", "CONFIG_IO_URING"), ["io-uring", "io-uring-pbuf", "guard"])
    assert [s.name for s in plan.scenarios] == ["io-uring"]
    assert plan.skipped["io-uring-pbuf"].startswith("kernel 6.1 predates 6.4")
    assert plan.skipped["guard"].startswith("kernel 6.1 predates 6.13")
    plan = scenarios.plan(_kernel("7.2.13+deb14-amd64", "CONFIG_IO_URING"), ["io-uring-pbuf", "guard"])
    assert not plan.skipped


def _vma(**over):
    vma = {
        "pid": 7, "start": "0x7f0000000000", "end": "0x7f0000004000", "flag_names": ["READ", "MAYREAD", "MIXEDMAP"],
        "ops": "packet_mmap_ops", "pages": {"ram": 4}, "entries": {"present": 4}, "leaves": {"pte": 4},
        "special": 0, "devmap": 0,
        "runs": [{"entry": "present", "level": "pte", "raw": "0x8000000001000225"}],
    }
    vma.update(over)
    return vma


def _doc(vma, findings=()):
    return {"layout": LAYOUT, "findings": list(findings),
            "summary": {"findings": {"error": 0, "warning": 0, "info": len(findings)}}}


def test_mapping_record_names_bits_and_its_own_findings():
    vma = _vma()
    mine = {"pid": 7, "severity": "info", "rule": "mixedmap-all-struct-pages", "vma": {"start": vma["start"]}}
    other = dict(mine, pid=8)
    mapping = {"kind": "packet-ring", "expect": "mixedmap-ram"}
    rec = zoo.mapping_record(mapping, vma, _doc(vma, [mine, other]), [])
    assert rec["flags"] == ["READ", "MIXEDMAP"]
    assert rec["bits"] == ["PRESENT USER SPECIAL NX (WB)"]
    assert rec["findings"] == [{"severity": "info", "rule": "mixedmap-all-struct-pages"}]


def test_document_round_trip_and_markdown(tmp_path):
    vma = _vma()
    rec = zoo.mapping_record({"kind": "packet-ring", "expect": "mixedmap-ram"}, vma, _doc(vma), [])
    bad = zoo.mapping_record({"kind": "devmem", "expect": "pfnmap-io-ram"}, vma, _doc(vma), ["VM_PFNMAP|VM_IO"])
    clean = {"qemu": zoo.clean_record(0, _doc(vma))}
    shapes = {name: "held" for name in zoo.SHAPES}
    shapes["guard"] = "kernel 6.1 predates 6.13"
    new = zoo.kernel_record("6.1.0-50-amd64", shapes, [rec, bad], clean)
    old = zoo.kernel_record("7.2.13", {}, [], {})
    doc = zoo.merge(zoo.merge(None, {"newest": old}), {"6.1": new})
    assert list(doc["kernels"]) == ["6.1", "newest"]
    path = tmp_path / "zoo.json"
    proof.write(path, doc)
    assert proof.load(path, zoo.SCHEMA) == json.loads(path.read_text())
    page = zoo.render_markdown(doc)
    assert "held: ram 4; pte×4 — clean" in page
    assert "**WRONG**: VM_PFNMAP\\|VM_IO" in page
    assert "kernel 6.1 predates 6.13" in page
    assert "| 6.1 | qemu | 0 | 0 / 0 / 0 | — |" in page
    assert zoo.main([str(path)]) == 0


def _rec(shape: str) -> dict:
    return {"shape": shape, "expect": shape, "flags": [], "ops": None, "pages": {"ram": 1}, "entries": {},
            "leaves": {"pud": 1}, "special": 0, "devmap": 0, "bits": [], "findings": [], "problems": []}


def _clean() -> dict:
    return {"exit": 0, "findings": {}, "info": {}}


def test_a_shape_held_in_a_boot_of_its_own_survives_the_main_boots_entry_in_either_order():
    """hugetlb-1g boots alone; the main boot's entry of the same kernel (which skips it) is
    written before or after, and neither loses the other's records."""
    reason = "needs a boot of its own with 3584 MiB of memory (lab run --scenario hugetlb-1g)"
    main = zoo.kernel_record("7.2", {"hugetlb": "held", "hugetlb-1g": reason}, [_rec("hugetlb")], {"qemu": _clean()})

    def alone(doc):
        return zoo.add_alone(doc, "newest", "7.2", "hugetlb-1g", [_rec("hugetlb-1g")], {"qemu": _clean()})

    for doc in (alone(zoo.merge(None, {"newest": main})), zoo.merge(alone(None), {"newest": main})):
        entry = doc["kernels"]["newest"]
        assert entry["scenarios"] == {"hugetlb": "held", "hugetlb-1g": "held (a boot of its own)"}
        assert sorted(r["shape"] for r in entry["mappings"]) == ["hugetlb", "hugetlb-1g"]
        assert set(entry["clean"]) == {"qemu", "qemu (hugetlb-1g alone)"}
        assert "held: ram 1; pud×1 — clean" in zoo.render_markdown(doc)
    # A second boot of its own replaces the first's records.
    again = alone(alone(None))["kernels"]["newest"]
    assert [r["shape"] for r in again["mappings"]] == ["hugetlb-1g"]
