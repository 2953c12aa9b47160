# SPDX-License-Identifier: GPL-2.0-or-later
"""``drgn-p2p lab run`` end to end: with a user's own kernel (bzImage + vmlinux +
modules), its JSON lines on stdout, and a scenario that fails to set up."""

import json
import os
import subprocess
import sys

import pytest

from drgn_p2p.lab.kernels import ensure_kernel

pytestmark = pytest.mark.lab


def test_lab_run_user_kernel() -> None:
    """Boot a kernel given as files (here the newest lab kernel's), hold a BAR mapping, audit it over QMP."""
    k = ensure_kernel("newest")
    argv = [
        sys.executable, "-m", "drgn_p2p", "lab", "run",
        "--bzimage", str(k.vmlinuz), "--vmlinux", str(k.vmlinux), "--modules", str(k.modules_dir),
        "--scenario", "pcibar", "--via", "qemu",
        "--", "--kind", "no-memmap", "--json",
    ]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = proc.stdout.splitlines()  # one JSON line per program source
    doc = json.loads(line)["audit"]
    assert doc["kernel"]["release"] == k.kver
    bars = [v for v in doc["vmas"] if "no-memmap" in v["pages"]]
    assert bars and all({"PFNMAP", "IO"} <= set(v["flag_names"]) for v in bars)
    assert "lab: audit via qemu exited 0" in proc.stderr


def test_lab_run_json_is_one_json_line_per_program_source() -> None:
    """``lab run -- --json`` through QMP and the lab's own QEMU dump: stdout is
    JSON lines and nothing else; the dump needs no warning (it is reassembled
    from QEMU's flattened format), and what the lab says goes to stderr."""
    ensure_kernel("newest")
    argv = [sys.executable, "-m", "drgn_p2p", "lab", "run", "--kernel", "newest", "--scenario", "anon",
            "--via", "qemu", "--via", "vmcore", "--", "--json"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(d["schema"], d["via"], d["exit_code"]) for d in docs] == [
        ("drgn-p2p/lab-run/1", "qemu", 0), ("drgn-p2p/lab-run/1", "vmcore", 0)]
    assert all(d["audit"]["schema"] == "drgn-p2p/audit/1" for d in docs)
    assert all(d["audit"]["summary"]["processes"] > 0 for d in docs)
    assert "warning:" not in proc.stderr, proc.stderr


def test_lab_run_exits_2_naming_a_scenario_that_failed_to_set_up(tmp_path) -> None:
    """A scenario the kernel allows but the guest cannot set up (here a test_hmm.ko
    that is no module, so insmod fails) is an error: the audits still run, then
    ``lab run`` names the scenario and why, and exits 2."""
    ensure_kernel("newest")
    bogus = tmp_path / "test_hmm.ko"
    bogus.write_bytes(b"not a kernel module\n")
    argv = [sys.executable, "-m", "drgn_p2p", "lab", "run", "--kernel", "newest", "--scenario", "anon",
            "--scenario", "device-private", "--via", "qemu", "--", "--json"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900,
                          env=dict(os.environ, DRGN_P2P_TEST_HMM=str(bogus)))
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stdout.splitlines()
    assert json.loads(line)["exit_code"] == 0  # the audit of what was held ran
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("error: scenario device-private failed to set up: "), proc.stderr[-3000:]
    assert "insmod" in last or "test_hmm" in last, last


def test_lab_matrix_tabulates_every_scenario_the_kernel_allows(tmp_path) -> None:
    """``lab matrix --kernel newest -o DIR``: the document holds every scenario
    the kernel's config allows (the plan decides from the config, not from the
    run), each classified; the others skipped with the reason; the Markdown has
    a row per kind and the HTML page is self-contained."""
    from drgn_p2p.lab import matrix
    from drgn_p2p.lab.scenarios import plan

    k = ensure_kernel("newest")
    argv = [sys.executable, "-m", "drgn_p2p", "lab", "matrix", "--kernel", "newest", "-o", str(tmp_path)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = matrix.load_all([str(tmp_path / "matrix.json")])
    entry = doc["kernels"]["newest"]
    assert entry["kver"] == k.kver and entry["failed"] == {}
    expected = plan(k)
    held = {r["shape"] for r in entry["mappings"]}
    assert held == {s.name for s in expected.scenarios}, (held ^ {s.name for s in expected.scenarios})
    assert set(entry["skipped"]) == set(expected.skipped)
    assert not [r for r in entry["mappings"] if r.get("missing")]
    by_kind = {r["shape"]: r for r in entry["mappings"]}
    # remap_pfn_range() of a BAR: VM_IO|VM_PFNMAP, special PTEs, no struct pages
    bar = by_kind["pcibar"]
    assert {"PFNMAP", "IO"} <= set(bar["flags"]) and set(bar["pages"]) == {"no-memmap"}
    assert bar["special"] == sum(bar["leaves"].values()) > 0
    md = (tmp_path / "matrix.md").read_text()
    assert all(f"| `{kind}` |" in md for kind in held | set(expected.skipped))
    page = (tmp_path / "matrix.html").read_text()
    assert "<script" not in page and "http" not in page and "pcibar" in page
