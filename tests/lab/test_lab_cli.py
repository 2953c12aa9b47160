# SPDX-License-Identifier: GPL-2.0-or-later
"""``drgn-p2p lab run`` end to end, with a user's own kernel (bzImage + vmlinux + modules)."""

import json
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
