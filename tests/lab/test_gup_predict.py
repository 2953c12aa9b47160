# SPDX-License-Identifier: GPL-2.0-or-later
"""
GUP predictions on the newest lab kernel, over QMP: every VMA of the audit
JSON carries ``gup`` segments that cover it exactly, every segment predicts
every flavour and user, and the document validates against the shipped
schema. Whether the predictions come true is the ground truth's business
(a lab workload that tries each user), not this file's.
"""

import json
import sys
import tempfile
from pathlib import Path
from typing import Dict

import pytest
from report_checkers import check_audit_json

from drgn_p2p.gup import USERS
from drgn_p2p.lab.cli import run_audit

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def audited(lab_guest):
    guest = lab_guest("newest")
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-test-") as tmp:
        code, output = run_audit(guest, "qemu", ["--json", "-v"], Path(tmp))
    assert code in (0, 1), f"audit via qemu failed ({code}):\n{output[-3000:]}"
    doc = json.loads(output[output.find("{\n"):])
    print(f"\naudit with GUP predictions over QMP: {doc['summary']['seconds']} s "
          f"for {doc['summary']['vmas']} VMAs", file=sys.stderr)
    return guest, doc


def test_every_vma_carries_gup_segments_that_cover_it(audited) -> None:
    _, doc = audited
    check_audit_json(doc)
    assert doc["vmas"], "the audit reported no VMA"
    for vma in doc["vmas"]:
        segments = vma["gup"]
        where = f"pid {vma['pid']} {vma['start']}-{vma['end']}"
        assert segments, f"{where}: no gup segments"
        assert segments[0]["start"] == vma["start"] and segments[-1]["end"] == vma["end"], where
        for a, b in zip(segments, segments[1:]):
            assert a["end"] == b["start"], f"{where}: gap or overlap at {a['end']}"
            assert a["predictions"] != b["predictions"], f"{where}: equal neighbours not merged at {a['end']}"
        for seg in segments:
            assert int(seg["start"], 16) < int(seg["end"], 16), where
            assert tuple(seg["predictions"]) == USERS, where


def test_every_held_mapping_has_a_prediction(audited) -> None:
    guest, doc = audited
    by_pid: Dict[int, list] = {}
    for vma in doc["vmas"]:
        by_pid.setdefault(vma["pid"], []).append(vma)
    assert guest.mappings, "the guest holds no mapping"
    for m in guest.mappings:
        addr = int(m["addr"])
        hits = [seg for vma in by_pid.get(int(m["pid"]), ()) for seg in vma["gup"]
                if int(seg["start"], 16) <= addr < int(seg["end"], 16)]
        assert len(hits) == 1, f"{m['kind']} at {addr:#x} (pid {m['pid']}): {len(hits)} segments"
