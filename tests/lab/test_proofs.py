# SPDX-License-Identifier: GPL-2.0-or-later
"""
Rule proofs: every rule of the catalogue, on every lab kernel, either fires on
a real page table that ``p2p_violate`` broke on purpose, or stays silent on
legitimate mappings of its kind where no wrong one can be held safely, or is
not applicable there, with the reason.

Per kernel, one guest with every lab scenario held (taken over from the
session's pool, then closed: it is changed): the clean guest is audited over
QMP (no error anywhere), then ``p2p_violate`` is loaded, ``violate_holder``
maps every case (and, where test_hmm runs, legitimate device-exclusive
entries), and the holder's PID is audited in-process. Each case must draw
exactly the rule ids of its ``trips``, with their catalogue severity, for
the holder's PID, over exactly its mapping; each control nothing at warning
or error level. The holder then restores its mappings on SIGTERM and the
module is unloaded: the kernel must not complain.

The results go to a JSON document (:mod:`drgn_p2p.lab.proof`), at
``$DRGN_P2P_PROOF_OUT`` or in the pytest cache
(``.pytest_cache/d/drgn-p2p/proof.json``), merged with the kernels of earlier
runs; ``scripts/proof-matrix`` renders it as ``docs/proof-matrix.md``.
"""

import gc
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from lab_prereq import missing

from drgn_p2p.lab import kmod, proof
from drgn_p2p.lab.scenarios import SCENARIOS
from drgn_p2p.records import Severity
from drgn_p2p.rules import RULES
from conftest import lab_document_path
from test_kmod import _can_build, _kernel

pytestmark = pytest.mark.lab

#: Newest first: after test_audit the session's pool still holds the newest
#: guest, which the first proof takes over instead of booting another.
KERNELS = ("newest", "6.12", "6.1")

#: Where the proof document goes (default: the pytest cache).
PROOF_ENV = "DRGN_P2P_PROOF_OUT"

#: test_hmm's first mirror device, used for the hmm-exclusive control.
HMM_DEVICE = "/dev/hmm_dmirror0"

#: The holder's legitimate device-exclusive entries (a control).
HMM_SPEC = proof.CaseSpec(
    kmod.HMM_EXCLUSIVE_CASE, (), "anonymous RAM made device-exclusive by test_hmm (HMM_DMIRROR_EXCLUSIVE)"
)

#: Kernel messages that mean a mapping was torn down (or met) in a bad state.
_COMPLAINT = re.compile(
    r"bad page|bad rss|BUG|WARNING|Oops|general protection|unrecognized swap entry"
    r"|p2p_violate: .*(building the mapping failed|memremap_pages|never cleared)",
    re.IGNORECASE,
)


def proof_path(config: pytest.Config) -> Path:
    """``$DRGN_P2P_PROOF_OUT``, else ``proof.json`` in the pytest cache (or the lab cache without one)."""
    return lab_document_path(config, PROOF_ENV, "proof.json")


def _record_kernel(config: pytest.Config, name: str, entry: Dict[str, Any]) -> Path:
    """Merge one kernel's entry into the proof document."""
    path = proof_path(config)
    try:
        existing: Optional[Dict[str, Any]] = proof.load(path)
    except (OSError, ValueError):
        existing = None
    proof.write(path, proof.merge(existing, {name: entry}))
    return path


def _run(guest, cmd: str, timeout: float = 120.0) -> str:
    rc, out = guest.run(cmd, timeout)
    assert rc == 0, f"{cmd!r} failed ({rc}):\n{out}"
    return out


def _prove(name: str, guest, kernel, violate: Path, holder: Path, started: float) -> Dict[str, Any]:
    """Audit the clean guest, break it, audit the holder, tear down; return the kernel's proof entry."""
    from drgn_p2p.pipeline import audit
    from drgn_p2p.target import open_program

    prog = open_program(qemu=guest.qmp_path, symbols=[str(kernel.vmlinux)])
    try:
        clean = audit(prog)
        before = int(_run(guest, "dmesg | wc -l").split()[-1])

        out = _run(guest, f"insmod {violate} && cat /sys/module/p2p_violate/parameters/devmem_phys")
        assert out.split()[-1] != "0", f"p2p_violate found no room for its ZONE_DEVICE chunks:\n{out}"
        facts = _header_facts(_run(guest, "dmesg | grep 'p2p_violate: facts'"))
        hmm_held = any(m["kind"] == "device-private" for m in guest.mappings)
        hmm = f" /dev/p2p_violate {HMM_DEVICE}" if hmm_held else ""
        _run(
            guest,
            f"setsid {holder} /out/violate.txt{hmm} </dev/null >/out/violate.log 2>&1 &"
            " for i in $(seq 100); do [ -e /out/violate.txt ] && break; sleep 0.1; done;"
            " cat /out/violate.txt /out/violate.log",
        )
        held = kmod.parse_manifest((guest.out_dir / "violate.txt").read_text())
        pid = held[0].pid
        assert all(h.pid == pid for h in held), held
        violations = audit(prog, pids=[pid])
    finally:
        del prog
        gc.collect()  # closes the QMP connection

    by_case = {h.case: h for h in held}
    assert [h.case for h in held if h.case != kmod.HMM_EXCLUSIVE_CASE] == [c.name for c in kmod.VIOLATE_CASES]
    cases = []
    specs = [(proof.CaseSpec(c.name, c.trips, c.what), c.unsupported(kernel.config)) for c in kmod.VIOLATE_CASES]
    if kmod.HMM_EXCLUSIVE_CASE in by_case:
        specs.append((HMM_SPEC, None))
    for spec, expected_skip in specs:
        h = by_case[spec.name]
        cases.append(proof.case_record(spec, h.pid, h.addr, h.length, h.skip, violations.findings, expected_skip))

    controls: List[proof.Control] = []
    control_findings = {}
    for h in held:
        if h.skip is None and h.case in proof.CONTROL_DOMAINS:
            controls.append(proof.Control(h.case, h.pid, h.addr, h.addr + h.length))
            control_findings[h.case] = violations.findings
    for m in guest.mappings:
        ctl = proof.Control(f"scenario:{m['kind']}", int(m["pid"]), int(m["addr"]), int(m["addr"]) + int(m["len"]))
        controls.append(ctl)
        control_findings[ctl.name] = clean.findings

    spans = [(h.addr, h.addr + h.length) for h in held if h.skip is None]
    stray = [
        f for f in violations.findings
        if f.severity >= Severity.WARNING and not any(f.start < e and f.end > s for s, e in spans)
    ]

    # The holder restores every mapping on SIGTERM; then the module must unload.
    out = _run(
        guest,
        f"kill -TERM {pid}; for i in $(seq 100); do kill -0 {pid} 2>/dev/null || break; sleep 0.1; done;"
        f" kill -0 {pid} 2>/dev/null && echo 'holder: still running';"
        " cat /out/violate.log; rmmod p2p_violate || echo 'rmmod p2p_violate failed';"
        f" dmesg | tail -n +{before + 1}",
    )
    teardown = [line.strip() for line in out.splitlines()
                if _COMPLAINT.search(line) or line.startswith(("holder:", "rmmod", "P2PV_IOC_RESTORE"))]

    scenarios = {}
    kinds = {m["kind"] for m in guest.mappings}
    for s in SCENARIOS:
        scenarios[s.name] = "held" if s.name in kinds else guest.skipped.get(s.name, "not set up")
    record = proof.kernel_record(
        name, kernel.kver, clean.layout,
        clean.not_applicable, cases, controls, control_findings, clean.findings, scenarios,
        stray=stray, teardown=teardown, seconds=time.monotonic() - started,
    )
    record["header_facts"] = facts
    record["learned_facts"] = _learned_facts(clean.layout)
    return record


def _header_facts(dmesg: str) -> Dict[str, int]:
    """The facts p2p_violate prints at load, from the kernel's own headers and config."""
    line = dmesg.strip().splitlines()[-1]
    return {k: int(v) for k, v in (word.split("=") for word in line.split("facts", 1)[1].split())}


def _learned_facts(layout) -> Dict[str, int]:
    """The same facts as drgn-p2p learned them (-1: the kernel has none)."""
    def n(value) -> int:
        return -1 if value is None else int(value)

    swap = layout.swap
    return {
        "max_swapfiles": swap.max_swapfiles, "hwpoison": n(swap.hwpoison),
        "migration_read": n(swap.migration_read), "device_write": n(swap.device_write),
        "device_exclusive": n(swap.device_exclusive_write), "pte_marker": n(swap.pte_marker),
        "swapin_error": n(swap.swapin_error), "devmap_bit": n(layout.devmap_bit),
        "pmd_special": int(layout.has_pmd_special), "pud_special": int(layout.has_pud_special),
        "uffd_minor_bit": n(layout.vm_flags.get("UFFD_MINOR")), "pfnmap_bit": n(layout.vm_flags.get("PFNMAP")),
        "mixedmap_bit": n(layout.vm_flags.get("MIXEDMAP")),
    }


@pytest.fixture(scope="module", params=KERNELS)
def proved(request, lab_session) -> Dict[str, Any]:
    """One kernel's proof entry (also merged into the proof document)."""
    name = request.param
    _can_build()
    if shutil.which("qemu-system-x86_64") is None:
        missing("qemu-system-x86_64 is not installed")
    pytest.importorskip("drgn")
    kernel = _kernel(name)
    violate = kmod.build_module(kernel, "p2p_violate")
    holder = kmod.build_holder()
    started = time.monotonic()
    guest = lab_session.take(name)
    try:
        entry = _prove(name, guest, kernel, violate, holder, started)
    finally:
        guest.close()
    path = _record_kernel(request.config, name, entry)
    print(f"\nproof: {kernel.kver} in {entry['seconds']:.0f} s → {path}", file=sys.stderr)
    return entry


def test_layout_matches_the_kernel_headers(proved: Dict[str, Any]) -> None:
    """What drgn-p2p learned (debug info, symbols, version tables) is what the
    kernel's own headers and configuration define, as the module compiled
    against them reports: swap types, the devmap bit, pmd/pud_special, VMA flag bits."""
    assert proved["learned_facts"] == proved["header_facts"]


def test_clean_guest_has_no_errors(proved: Dict[str, Any]) -> None:
    """Before the module is loaded, no process of the guest draws an error-level finding."""
    assert not proved["clean"]["errors"], proved["clean"]["errors"]


@pytest.mark.parametrize("case", [c.name for c in kmod.VIOLATE_CASES] + [kmod.HMM_EXCLUSIVE_CASE])
def test_case(proved: Dict[str, Any], case: str) -> None:
    """A broken case draws exactly its rules (severity, PID, whole mapping); a control draws nothing loud."""
    rec = next((c for c in proved["cases"] if c["case"] == case), None)
    if rec is None:
        pytest.skip(f"{case} not held on {proved['kver']} (test_hmm's device-private scenario did not run)")
    if rec["verdict"] == "skipped":
        pytest.skip(f"{case} on {proved['kver']}: {rec['skip']}")
    assert not rec["problems"], rec
    start, end = int(rec["start"], 16), int(rec["end"], 16)
    if rec["control"]:
        assert rec["verdict"] == "silent"
        assert all(f["severity"] == "info" for f in rec["found"]), rec["found"]
        return
    assert rec["verdict"] == "fired"
    severity = {r.id: r.severity.label for r in RULES}
    assert {f["rule"] for f in rec["found"]} == set(rec["trips"]), rec["found"]
    for f in rec["found"]:
        assert f["severity"] == severity[f["rule"]], f
        assert start <= int(f["start"], 16) < int(f["end"], 16) <= end, (f, rec["start"], rec["end"])


def test_controls_silent(proved: Dict[str, Any]) -> None:
    """Every legitimate mapping held (module controls, test_hmm's entries, the lab scenarios) stays silent."""
    noisy = [c for c in proved["controls"] if c["noisy"]]
    assert not noisy, noisy


def test_no_stray_findings(proved: Dict[str, Any]) -> None:
    """Nothing but the cases draws a warning or error in the holder, and nothing else went wrong."""
    stray = [p for p in proved["problems"] if "stray" in p]
    assert not stray, stray


def test_teardown_is_clean(proved: Dict[str, Any]) -> None:
    """After the holder restored and exited and the module unloaded, the kernel has not complained."""
    assert not proved["teardown"], proved["teardown"]


@pytest.mark.parametrize("rule", [r.id for r in RULES])
def test_rule_accounted(proved: Dict[str, Any], rule: str) -> None:
    """Each rule fired on its case, or is silent or not applicable with the reason."""
    got = proved["rules"][rule]
    assert got["status"] in ("fired", "silent", "n/a"), got
    if got["status"] == "fired":
        assert got["fired_by"], got
    else:
        assert got["reason"], got
    if got["status"] == "silent":
        assert rule in proof.NOT_PROVABLE and got["silent_on"], got
    expressible = [c for c in proved["cases"] if rule in c["trips"] and c["verdict"] != "skipped"]
    if expressible and got["status"] != "n/a":
        assert got["status"] == "fired", got
