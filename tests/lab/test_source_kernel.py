# SPDX-License-Identifier: GPL-2.0-or-later
"""
A kernel built from Debian's ``linux-source`` package as a user builds one:
``make defconfig kvm_guest.config`` plus the lab's fragment
(``drgn_p2p/lab/kconfig/``, which leaves CONFIG_PCI_P2PDMA off on purpose),
``make`` in place (:func:`drgn_p2p.lab.kbuild.build_source_kernel`, cached).
``drgn-p2p lab run --kernel-dir`` on the tree must say before the boot that
it skips exactly the scenarios whose options the tree's .config lacks, each
naming those options; build test_hmm against the tree (from the tree's own
lib/test_hmm.c) so that device-private is held; set up every other scenario;
and find nothing at warning level.

Full tier only (``DRGN_P2P_LAB_TIER=full``): the build takes far longer than
a CI run with an empty cache can spend (README, "A kernel built from source").
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drgn_p2p.lab import kbuild, kmod
from drgn_p2p.lab.kernels import build_tree_kernel, parse_config
from drgn_p2p.lab.scenarios import SCENARIOS

from lab_prereq import missing

pytestmark = [pytest.mark.lab, pytest.mark.full_tier]  # it builds a kernel

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(lab_session) -> Path:
    lab_session.close()  # at most one guest alive
    if os.geteuid() != 0:
        missing("root (the build chroot)")
    timings = {}
    built = kbuild.build_source_kernel(timings=timings)
    print(f"\nlinux-source-{kbuild.SERIES}: {kbuild.build_record(built)}")
    return built


def _lacking(config) -> dict:
    """{scenario: the options it requires that *config* has neither =y nor =m}, for x86-64."""
    enabled = {k for k, v in config.items() if v in ("y", "m")}
    out = {}
    for s in SCENARIOS:
        s = s.on("amd64")
        lacks = [o for o in s.requires if o not in enabled]
        if s.requires_any and not enabled.intersection(s.requires_any):
            lacks += list(s.requires_any)
        if lacks:
            out[s.name] = lacks
    return out


def test_the_fragment_sticks(tree: Path) -> None:
    config = parse_config((tree / ".config").read_text())
    wanted = kbuild.fragment_options(kbuild.FRAGMENT.read_text())
    assert {k: config.get(k) for k in wanted} == wanted
    assert wanted["CONFIG_PCI_P2PDMA"] is None and config.get("CONFIG_DEVICE_PRIVATE") == "y"


def test_test_hmm_is_built_against_the_tree(tree: Path) -> None:
    kernel = build_tree_kernel(tree)
    target = kmod.module_target(kernel)
    assert target.headers.tree == tree and target.hmm_tree == tree.resolve()
    ko = kmod.build_module(kernel, "test_hmm")
    record = json.loads((ko.parent / ".drgn-p2p-complete").read_text())
    assert record["headers"] == str(tree) and record["sources"] == f"{tree.resolve()}/lib", record
    release = (tree / "include" / "config" / "kernel.release").read_text().strip()
    assert kmod.vermagic(ko).split()[0] == release == kernel.kver


def test_lab_run_on_the_tree(tree: Path, tmp_path: Path) -> None:
    config = parse_config((tree / ".config").read_text())
    lacking = _lacking(config)
    assert "CONFIG_PCI_P2PDMA" in lacking["p2pdma"] and "device-private" not in lacking
    out = tmp_path / "audit.json"
    proc = subprocess.run([sys.executable, "-m", "drgn_p2p", "lab", "run", "--kernel-dir", str(tree), "--via", "qemu",
                           "--format", "json", "-o", str(out)], capture_output=True, text=True, timeout=3600,
                          cwd=REPO, stdin=subprocess.DEVNULL)
    assert proc.returncode in (0, 1), proc.stderr[-4000:]
    lines = proc.stderr.splitlines()
    booting = next(i for i, line in enumerate(lines) if line.startswith("lab: booting"))
    release = (tree / "include" / "config" / "kernel.release").read_text().strip()
    said = dict(re.match(rf"lab: {re.escape(release)} will skip (\S+): (.*)", line).groups()
                for line in lines[:booting] if " will skip " in line)
    # Every scenario whose options the .config lacks is skipped, naming them;
    # any other skip names no option (a release it predates, a boot of its own).
    for name, lacks in lacking.items():
        assert name in said and all(opt in said[name] for opt in lacks), (name, lacks, said)
    named = {opt for reason in said.values() for opt in re.findall(r"CONFIG_\w+", reason)}
    assert named == {opt for lacks in lacking.values() for opt in lacks}, said
    assert "error:" not in proc.stderr, proc.stderr[-4000:]
    held = {m.split()[0] for m in lines if m.startswith("  ") and " pid " in m}
    assert "device-private" in held, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert doc["kernel"]["release"] == release
    loud = [f for f in doc["findings"] if f["severity"] in ("warning", "error")]
    assert not loud, loud
