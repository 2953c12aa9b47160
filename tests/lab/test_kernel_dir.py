# SPDX-License-Identifier: GPL-2.0-or-later
"""``drgn-p2p lab run --kernel-dir BUILD`` on the 6.12 lab kernel's files laid
out as a build tree (symlinks: arch/x86/boot/bzImage, vmlinux, .config, and the
modules where ``make modules_install INSTALL_MOD_PATH=BUILD`` puts them): a real ``make`` of a
distribution kernel is far too slow for a test on a two-core machine (not timed here). The scenarios its config rules out are said before the boot, each with
the config option or release, and are exactly the ones the plan skips for
the lab's own 6.12 (which lacks CONFIG_PCI_P2PDMA and CONFIG_DEVICE_PRIVATE);
the audit reads the kernel of the tree."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drgn_p2p.lab.kernels import ensure_kernel
from drgn_p2p.lab.scenarios import SCENARIOS, plan

pytestmark = pytest.mark.lab


def test_lab_run_kernel_dir(tmp_path: Path) -> None:
    kernel = ensure_kernel("6.12")
    build = tmp_path / "build"
    for rel, target in (("arch/x86/boot/bzImage", kernel.vmlinuz), ("vmlinux", kernel.vmlinux),
                        (".config", Path(kernel.dir) / "config"),
                        (f"lib/modules/{kernel.kver}", kernel.modules_dir)):
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).symlink_to(target)
    out = tmp_path / "audit.json"
    proc = subprocess.run([sys.executable, "-m", "drgn_p2p", "lab", "run", "--kernel-dir", str(build), "--via", "qemu",
                           "--format", "json", "-o", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    booting = next(i for i, line in enumerate(lines) if line.startswith("lab: booting"))
    said = dict(re.match(rf"lab: {re.escape(kernel.kver)} will skip (\S+): (.*)", line).groups()
                for line in lines[:booting] if " will skip " in line)
    assert said == dict(plan(kernel).skipped) and "p2pdma" in said and "device-private" in said
    # Each skip names a config option or a release, but a shape that boots alone (its memory) says so.
    alone = {s.name for s in SCENARIOS if s.memory_mib}
    assert all("lacks CONFIG_" in reason or "predates" in reason for name, reason in said.items()
               if name not in alone), said
    assert all("a boot of its own" in said[name] for name in alone if name in said), said
    assert json.loads(out.read_text())["kernel"]["release"] == kernel.kver
