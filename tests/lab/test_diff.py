# SPDX-License-Identifier: GPL-2.0-or-later
"""
``drgn-p2p diff`` of two real audits: the 6.1 and the newest lab kernel, each
booted by ``drgn-p2p lab run`` holding an fsdax and a device-dax mapping and
audited over QMP with ``--runs --format json -o FILE``, as a user does it.

What the diff must show comes from each kernel's config: x86 selects
``CONFIG_ARCH_HAS_PTE_DEVMAP`` (and so defines ``_PAGE_DEVMAP`` and
``pte_devmap()``) until the devmap removal (v6.17). On a kernel with it, DAX
leaves carry devmap (``pte_mkdevmap()``/``pmd_mkdevmap()`` in
``dax_insert_pfn()``/``vmf_insert_pfn_pmd()``); on one without, no leaf can.
The mappings are found by what they are — ext4's ``ext4_dax_vm_ops``
(fs/ext4/file.c) and device-dax's ``dax_vm_ops`` (drivers/dax/device.c) —
never by address or PID.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest
from report_checkers import check_audit_json, check_diff_json

pytestmark = pytest.mark.lab

KERNELS = ("6.1", "newest")
#: The vm_ops of each DAX kind, and how many mappings of it the scenarios hold (fsdax: a
#: 256 KiB PTE mapping and a 4 MiB PMD one, of two files).
DAX_OPS = {"fsdax": ("ext4_dax_vm_ops", 2), "devdax": ("dax_vm_ops", 1)}


def _drgn_p2p(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "drgn_p2p", *args]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def audits(lab_session, tmp_path_factory) -> Dict[str, Tuple[Path, Dict[str, str]]]:
    """Kernel name → (its audit document, its config)."""
    from drgn_p2p.lab.kernels import ensure_kernel

    lab_session.close()  # lab run boots its own guest: keep one alive
    out = tmp_path_factory.mktemp("diff")
    docs = {}
    for name in KERNELS:
        kernel = ensure_kernel(name)
        path = out / f"audit-{name}.json"
        proc = _drgn_p2p("lab", "run", "--kernel", name, "--via", "qemu", "--scenario", "fsdax",
                         "--scenario", "devdax", "--runs", "--format", "json", "-o", str(path))
        assert proc.returncode in (0, 1), proc.stderr[-3000:]
        doc = json.loads(path.read_text())
        check_audit_json(doc)
        assert doc["kernel"]["release"] == kernel.kver
        docs[name] = (path, kernel.config)
    return docs


def _kinds(entries, ops: str, count: int):
    found = [e for e in entries if e["kind"]["ops"] == ops]
    assert len(found) == count, (ops, [e["kind"] for e in entries])
    return found


def test_diff_shows_the_devmap_removal_and_dax_changes(audits) -> None:
    (a, a_config), (b, b_config) = audits["6.1"], audits["newest"]
    a_devmap = a_config.get("CONFIG_ARCH_HAS_PTE_DEVMAP") == "y"
    b_devmap = b_config.get("CONFIG_ARCH_HAS_PTE_DEVMAP") == "y"
    # The lab's pinned kernels straddle the removal (v6.17): 6.1 has it, the newest has not.
    assert (a_devmap, b_devmap) == (True, False)

    proc = _drgn_p2p("diff", str(a), str(b), "--json")
    assert proc.returncode == 1, proc.stderr  # 1: the audits differ
    doc = json.loads(proc.stdout)
    check_diff_json(doc)

    layout = {row["fact"]: (row["a"], row["b"]) for row in doc["layout"]}
    assert layout["devmap_bit"][0] is not None and layout["devmap_bit"][1] is None
    rules = {row["rule"]: row for row in doc["rules"]}
    assert rules["devmap-not-dax"]["a_not_applicable"] is None
    assert "devmap" in rules["devmap-not-dax"]["b_not_applicable"]

    for kind, (ops, count) in DAX_OPS.items():
        for entry in _kinds(doc["changed"], ops, count):
            facts_a, facts_b = entry["a"], entry["b"]
            assert kind in facts_a["page_kinds"] and kind in facts_b["page_kinds"], entry
            assert any(bit.endswith(" devmap") for bit in facts_a["bits"]), (kind, facts_a)
            assert not any(bit.endswith(" devmap") for bit in facts_b["bits"]), (kind, facts_b)
            bits = {c["field"]: c for c in entry["changes"]}["bits"]
            assert {f"{level} devmap" for level in facts_a["levels"]} & set(bits["removed"]), bits
            assert entry["kind"]["share"] == "shared"
    # Matched by what the mapping is: not by a PID, an address or the fsdax file's mktemp name.
    assert all("XXXXXX" in e["kind"]["file"] for e in _kinds(doc["changed"], *DAX_OPS["fsdax"]))

    # The same as a table: the removed devmap bits are named.
    table = _drgn_p2p("diff", str(a), str(b))
    assert table.returncode == 1
    assert "devmap_bit" in table.stdout and "devmap" in table.stdout and "dax_vm_ops" in table.stdout
