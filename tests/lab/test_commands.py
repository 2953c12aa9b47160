# SPDX-License-Identifier: GPL-2.0-or-later
"""
The other commands on a real kernel: explain, maps, pgmaps, layout, rules —
through the real CLI over QMP, against the newest lab kernel's held mappings.
"""

import json
import subprocess
import sys
from typing import Dict, List

import pytest

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def guest(lab_guest):
    return lab_guest("newest")


def cli(guest, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "drgn_p2p", *args, "--qemu", guest.qmp_path, "-s", str(guest.kernel.vmlinux)]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)


def cli_json(guest, *args: str):
    proc = cli(guest, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def held(guest, kind: str) -> List[Dict]:
    found = [m for m in guest.mappings if m["kind"] == kind]
    if not found:
        pytest.skip(f"{kind} not held: {guest.skipped.get(kind)}")
    return found


def test_layout(guest) -> None:
    doc = cli_json(guest, "layout")
    lay, learned = doc["layout"], doc["learned"]
    assert lay["levels"] == 5  # -cpu max enables LA57
    assert lay["zone_shift"] == 51 and lay["zone_bits"] == 3  # Debian: NODES_SHIFT 10, 5 zones
    assert learned["levels"]["how"] == "vmcoreinfo"
    assert lay["memory_types"] == {"PRIVATE": 1, "COHERENT": 2, "FS_DAX": 3, "GENERIC": 4, "PCI_P2PDMA": 5}
    assert lay["vm_flags"]["PFNMAP"] == 10 and lay["vm_flags"]["MIXEDMAP"] == 28 and lay["vm_flags"]["IO"] == 14
    # The swap types must agree with swap_info's length by the kernel's own formula.
    swap = lay["swap"]
    assert swap["hwpoison"] == swap["max_swapfiles"]
    assert swap["pte_marker"] == 31


def test_explain_fsdax(guest) -> None:
    m = held(guest, "fsdax")[0]
    doc = cli_json(guest, "explain", str(m["pid"]), hex(int(m["addr"])))
    assert [w["level"] for w in doc["walk"]] == ["pgd", "p4d", "pud", "pmd", "pte"]
    assert doc["leaf"]["page_kind"] == "fsdax" and doc["leaf"]["kind"] == "present"
    assert doc["vma"]["ops"] == "ext4_dax_vm_ops"
    assert doc["leaf"]["zone"] == "ZONE_DEVICE"  # page_zonenum() of the namespace's struct page
    verdicts = {r["rule"]: r["verdict"] for r in doc["rules"]}
    assert verdicts["dax-leaf-bits"] == "ok" and "error" not in verdicts.values()


def test_explain_device_private(guest) -> None:
    for m in held(guest, "device-private"):
        doc = cli_json(guest, "explain", str(m["pid"]), hex(int(m["addr"])))
        assert doc["leaf"]["kind"] == "device-private"
        assert doc["leaf"]["page_kind"] == "device-private"
        assert doc["leaf"]["level"] == m["expect"].rpartition("-")[2]


def test_explain_outside_vma(guest) -> None:
    m = held(guest, "anon")[0]
    proc = cli(guest, "explain", str(m["pid"]), "0x1000")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not in any VMA" in proc.stderr


def test_maps(guest) -> None:
    m = held(guest, "pcibar")[0]
    vmas = cli_json(guest, "maps", str(m["pid"]))
    addr = int(m["addr"])
    hit = [v for v in vmas if int(v["start"], 16) <= addr < int(v["end"], 16)]
    assert len(hit) == 1 and {"PFNMAP", "IO"} <= set(hit[0]["flag_names"])
    assert hit[0]["pages"] == {"no-memmap": int(m["len"]) // 4096}


def test_pgmaps(guest) -> None:
    rows = cli_json(guest, "pgmaps")
    by_type: Dict[str, List[Dict]] = {}
    for row in rows:
        by_type.setdefault(row["type"], []).append(row)
    expected = {"fsdax": "FS_DAX", "devdax": "GENERIC", "p2pdma": "PCI_P2PDMA", "device-private": "PRIVATE",
                "device-coherent": "COHERENT"}
    checked = 0
    for kind, type_name in expected.items():
        for m in [x for x in guest.mappings if x["kind"] == kind]:
            users = {user for row in by_type.get(type_name, []) for user in row["mapped_by"]}
            assert f"{m['pid']}/holder" in users, f"{kind}: pid {m['pid']} not among {type_name} users {users}"
            checked += 1
    # Every lab kernel holds fsdax and devdax at least: the loop cannot pass empty.
    assert checked >= 2, (sorted(by_type), guest.skipped)
    for row in by_type.get("PCI_P2PDMA", []):
        assert row["owner"].startswith("0000:"), row  # the providing PCI device


def test_rules_applicability(guest) -> None:
    rows = cli_json(guest, "rules")
    verdict = {r["id"]: r for r in rows}
    assert verdict["pfnmap-not-special"]["applicable"] is True
    # 7.x has no devmap bit: the devmap rules must say so rather than pass silently.
    assert verdict["devmap-not-dax"]["applicable"] is False
    assert "devmap" in verdict["devmap-not-dax"]["not_applicable_because"]
