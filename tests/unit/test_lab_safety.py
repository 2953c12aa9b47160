# SPDX-License-Identifier: GPL-2.0-or-later
"""The lab harness builds no shell command from strings it did not quote:
its run directories (which hold the QMP sockets) are private, the guest's
config.env quotes every value, the live audit's command line round-trips
through the guest's shell, host commands run without a shell, and nothing
in the lab uses ``shell=True`` or ``os.system``."""

import ast
import os
import shlex
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import List

import pytest

import drgn_p2p.lab as lab_pkg
from drgn_p2p.lab import cli as lab_cli
from drgn_p2p.lab import vm
from drgn_p2p.lab.scenarios import Plan, Scenario

NASTY = ["a b", "it's", 'say "hi"', "$(touch /tmp/drgn-p2p-pwned)", "`id`", "x; rm -rf /", "back\\slash", "new\nline", "*", "~"]


def test_run_dir_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    old = os.umask(0o000)  # even under a permissive umask
    try:
        run_dir = vm._run_dir()
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        assert run_dir.parent == tmp_path
    finally:
        run_dir.rmdir()


def test_config_env_quotes_every_value(tmp_path: Path) -> None:
    kernel = SimpleNamespace(kver="7.2.0 $(id) 'q'", dir=tmp_path / "k d", modules_dir=None)
    scenarios = tuple(Scenario(name=n, expect=e) for n, e in zip(NASTY, reversed(NASTY)))
    plan = Plan(scenarios=scenarios, skipped={}, test_hmm=tmp_path / "hmm;`id`.ko")
    holder = tmp_path / "hold er$(id)"
    env = tmp_path / "config.env"
    env.write_text(vm._config_env(kernel, plan, holder))
    script = (
        f"set -u; . {shlex.quote(str(env))}; "
        'printf "%s\\0" "$QP_KVER" "$QP_HOLDER" "$QP_TEST_HMM" "$QP_SCENARIOS"; '
        'for k in "${!QP_EXPECT[@]}"; do printf "%s=%s\\0" "$k" "${QP_EXPECT[$k]}"; done'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True, cwd=tmp_path).stdout
    values = out.decode().split("\0")[:-1]
    assert values[:4] == [kernel.kver, str(holder), str(plan.test_hmm), " ".join(NASTY)]
    assert sorted(values[4:]) == sorted(f"{s.name}={s.expect}" for s in scenarios)
    assert not Path("/tmp/drgn-p2p-pwned").exists()


class FakeGuest:
    """Records the command the lab would run in the guest."""

    def __init__(self, vmlinux: str, out_dir: Path = Path("/nonexistent")) -> None:
        self.kernel = SimpleNamespace(vmlinux=vmlinux)
        self.out_dir = out_dir
        self.qmp_path = "/run dir/qmp.sock"
        self.commands: List[str] = []

    def run(self, cmd: str, timeout: float = 120.0):
        self.commands.append(cmd)
        return 0, ""

    def dump(self, path, fmt="kdump-zlib"):
        return Path(path)


def test_live_audit_command_round_trips_through_the_guest_shell(tmp_path: Path) -> None:
    guest = FakeGuest("/cache/vm linux $(id)")
    args = ["--comm", NASTY[3], "--range", "1-2", "--rule", NASTY[5]]
    argv, where = lab_cli.audit_argv(guest, "live", args, tmp_path)
    assert where == "guest"
    lab_cli.run_audit(guest, "live", args, tmp_path)
    (cmd,) = guest.commands
    words = shlex.split(cmd)
    assert words[:-1] == argv and words[-1] == "2>/out/audit.stderr"
    assert argv[argv.index("-s") + 1] == guest.kernel.vmlinux
    assert argv[-len(args):] == args


@pytest.mark.parametrize("via", ["qemu", "vmcore"])
def test_host_audits_run_without_a_shell(via: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_run(argv, **kwargs):
        seen["argv"], seen["kwargs"] = argv, kwargs
        return SimpleNamespace(returncode=0, stdout=b"", stderr=b"")

    monkeypatch.setattr(lab_cli.subprocess, "run", fake_run)
    guest = FakeGuest("/v m")
    lab_cli.run_audit(guest, via, ["--comm", NASTY[3]], tmp_path)
    assert isinstance(seen["argv"], list) and not seen["kwargs"].get("shell")
    assert seen["argv"][-2:] == ["--comm", NASTY[3]]


def test_no_shell_strings_in_the_lab() -> None:
    """No ``shell=True``, ``os.system`` or ``os.popen`` anywhere in the lab package."""
    root = Path(lab_pkg.__file__).resolve().parent
    problems = []
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 5
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                    problems.append(f"{path.name}:{node.value.lineno}: shell=")
            if isinstance(node, ast.Attribute) and node.attr in ("system", "popen") and getattr(node.value, "id", "") == "os":
                problems.append(f"{path.name}:{node.lineno}: os.{node.attr}")
    assert problems == []


def test_coherent_scenario_gives_test_hmm_its_memory(tmp_path):
    """device-coherent reserves real memory below the guest's top and hands test_hmm
    its address; without it test_hmm is loaded plain (devices 0 and 1 only)."""
    from types import SimpleNamespace

    from drgn_p2p.lab import scenarios

    hmm = tmp_path / "test_hmm.ko"
    hmm.write_bytes(b"\0")
    kernel = SimpleNamespace(dir=tmp_path, config={"CONFIG_DEVICE_PRIVATE": "y", "CONFIG_PCI": "y"})
    both = scenarios.plan(kernel, ["device-private", "device-coherent"], test_hmm=hmm)
    assert [s.name for s in both.scenarios] == ["device-private", "device-coherent"] and both.test_hmm == hmm
    base0, base1 = scenarios.COHERENT_BASES
    assert {f"memmap=256M${base0 >> 20}M", f"memmap=256M${base1 >> 20}M"} <= set(both.cmdline())
    assert both.test_hmm_args() == [f"spm_addr_dev0={base0:#x}", f"spm_addr_dev1={base1:#x}"]
    # Both inside the guest's low 2 GiB of RAM, clear of the fsdax and devdax pmem ranges.
    pmem = [(1 << 30, (1 << 30) + (256 << 20)), (1536 << 20, 1792 << 20)]
    for base in (base0, base1):
        assert base + (256 << 20) <= 2 << 30
        assert all(base + (256 << 20) <= lo or base >= hi for lo, hi in pmem)
    assert scenarios.plan(kernel, ["device-private"], test_hmm=hmm).test_hmm_args() == []
    without = scenarios.plan(SimpleNamespace(dir=tmp_path, config={}), ["device-coherent"], test_hmm=hmm)
    assert "CONFIG_DEVICE_PRIVATE" in without.skipped["device-coherent"]
