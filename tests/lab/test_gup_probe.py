# SPDX-License-Identifier: GPL-2.0-or-later
"""
GUP ground truth: on each lab kernel, one guest with every lab scenario held,
a virtio-blk disk and a Soft-RoCE device; every holder tries every GUP user of
:data:`drgn_p2p.lab.gup.USERS` on its own mappings (``drgn-p2p lab gup-probe``).

The test checks that the ground truth is real, not what it says:
- every held mapping (but :data:`~drgn_p2p.lab.gup.NOT_PROBED`) was probed by
  every user whose config options the kernel has, and nothing failed to set
  up (a missing disk, rdma_rxe link or uverbs device is a failure);
- every outcome is in the vocabulary (``ok``, ``short``, ``oops``, an errno name);
- the anonymous RAM control (``anon``) gets ``ok`` from every user;
- a VM_PFNMAP mapping (``pf`` in the kernel's own /proc/PID/smaps VmFlags)
  gets EFAULT from O_DIRECT in both directions, to the virtio-blk disk and to
  the NVMe namespace: GUP-fast refuses the special
  PTE/PMD/PUD, and the slow path's check_vma_flags() (mm/gup.c, all three
  kernels) returns -EFAULT for VM_IO | VM_PFNMAP;
- the audit was taken while the mappings were held and lists every probed VMA.

The document goes to ``$DRGN_P2P_GUP_OUT/<release>.json`` (a directory), else
the pytest cache (``.pytest_cache/d/drgn-p2p/gup-observed/``);
``python -m drgn_p2p.lab.gup FILE...`` renders ``docs/gup-observed.md``.
"""

import errno
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
from conftest import lab_document_path
from lab_prereq import missing, tiered

from drgn_p2p.lab import gupmatrix
from drgn_p2p.lab.gup import NOT_PROBED, OUTCOME_WORDS, SCHEMA, USERS, probe

pytestmark = pytest.mark.lab

#: The ground truth on every lab kernel in the full tier; on the newest in CI.
KERNELS = tiered(("newest", "6.12", "6.1"), ("newest",))

#: Every errno name (errno.errorcode keeps one name per value: ENOTSUP, not EOPNOTSUPP).
ERRNO_NAMES = frozenset(n for n in dir(errno) if n.startswith("E") and isinstance(getattr(errno, n), int))

#: The environment variable naming the directory for the documents.
OUT_ENV = "DRGN_P2P_GUP_OUT"


def alone_on(lab_session, name: str):
    """The lab kernel *name*, with the session's shared guest closed: a GUP probe
    boots guests of its own (with a disk), one at a time."""
    if shutil.which("qemu-system-x86_64") is None:
        missing("qemu-system-x86_64 is not installed")
    from drgn_p2p.lab.kernels import ensure_kernel

    lab_session.close()
    return ensure_kernel(name)


def write_document(config: pytest.Config, observed, suffix: str = "") -> Tuple[Dict[str, Any], Path]:
    """The ground-truth document of *observed* and where it went: ``$DRGN_P2P_GUP_OUT``,
    else gup-observed/ beside the other lab documents, as ``<release><suffix>.json``."""
    doc = observed.to_json()
    out = lab_document_path(config, OUT_ENV, "gup-observed") / f"{observed.kernel}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return doc, out


@pytest.mark.parametrize("name", KERNELS)
def test_gup_ground_truth(lab_session, name: str, request: pytest.FixtureRequest) -> None:
    kernel = alone_on(lab_session, name)
    observed = probe(kernel, log=lambda line: print(line, file=sys.stderr))
    doc, out = write_document(request.config, observed)
    print(f"\ngup: {observed.kernel}: {len(observed.mappings)} mappings probed in "
          f"{observed.timings['total']:.0f} s ({dict(observed.timings)}); document {out}", file=sys.stderr)

    assert doc["schema"] == SCHEMA
    assert not observed.problems, f"{observed.kernel}: {list(observed.problems)}"

    # Every user the kernel's config allows ran; a skip names the config option.
    for user, why in observed.skipped_users.items():
        assert why.startswith("kernel lacks CONFIG_"), (user, why)
    assert list(observed.users) == [u for u, _ in USERS if u not in observed.skipped_users]

    # Every held mapping was probed, by every user.
    held = {(m["kind"], int(m["pid"]), int(m["addr"])) for m in observed.held if m["kind"] not in NOT_PROBED}
    probed = {(m.scenario, m.pid, m.start) for m in observed.mappings}
    assert held, "the guest held no mapping"
    assert probed == held, f"held but not probed: {sorted(held - probed)}; probed but not held: {sorted(probed - held)}"
    assert "anon" in {m.scenario for m in observed.mappings}
    for m in observed.mappings:
        assert [a.user for a in m.attempts] == list(observed.users), m.scenario
        # The audit was taken while the mapping was held, and lists its VMA.
        assert m.vma is not None, f"{m.scenario} at {m.start:#x}: not in the audit of pid {m.pid}"
        for a in m.attempts:
            assert a.outcome in OUTCOME_WORDS or a.outcome in ERRNO_NAMES, (m.scenario, a)
            assert m.start <= a.addr < m.start + m.length and a.addr % 4096 == 0, (m.scenario, a)

    # The RAM control: every user takes the page.
    for m in observed.mappings:
        if m.scenario == "anon":
            assert {a.user: a.outcome for a in m.attempts} == {u: "ok" for u in observed.users}

    # VM_PFNMAP: O_DIRECT, to either disk, gets EFAULT (check_vma_flags(), mm/gup.c).
    odirect = [u for u in observed.users if u.startswith("odirect-")]
    assert {"odirect-read", "odirect-write"} <= set(odirect)
    pfnmaps = [m for m in observed.mappings if "pf" in m.vm_flags]
    assert any(m.scenario == "pcibar" for m in pfnmaps), "pcibar is not VM_PFNMAP"
    for m in pfnmaps:
        got = {a.user: a.outcome for a in m.attempts if a.user in odirect}
        assert got == {u: "EFAULT" for u in odirect}, (m.scenario, m.expect, got)

    # The prediction the audit made from the page tables alone, before any user
    # ran (vmas[*].gup of the document's audit), says what the kernel did.
    cells = gupmatrix.cells(doc)
    unmet = {m.scenario for m in observed.mappings} - {c.scenario for c in cells}
    assert cells and not unmet, f"no prediction met the attempts on {sorted(unmet)}"
    wrong = [f"{c.scenario} × {c.user} at {c.addr:#x}: predicted {c.predicted} ({c.decided_by}: {c.why}), "
             f"observed {c.observed}" for c in cells if not c.agree]
    assert not wrong, "\n".join(wrong)
