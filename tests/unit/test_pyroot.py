# SPDX-License-Identifier: GPL-2.0-or-later
"""The arm64 guest's Python root: package closure, usr-merge, and the live audit's command line."""

import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import pytest

from drgn_p2p.lab import LabError, pyroot
from drgn_p2p.lab import cli as lab_cli

#: A tiny archive: apt-cache show records by "name/suite".
ARCHIVE: Dict[str, Dict[str, str]] = {
    "python3": {"Version": "3.14.8-1", "Depends": "python3.14 (>= 3.14.8-1), libpython3-stdlib (= 3.14.8-1)"},
    "python3.14": {"Version": "3.14.10-1", "Pre-Depends": "libc6 (>= 2.38)",
                   "Depends": "media-types | mime-support, tzdata"},
    "libpython3-stdlib": {"Version": "3.14.8-1", "Depends": "libpython3.14-stdlib"},
    "libpython3.14-stdlib": {"Version": "3.14.10-1", "Depends": "debconf (>= 0.5) | debconf-2.0, libc6"},
    "libc6": {"Version": "2.43-7", "Depends": "libgcc-s1"},
    "libgcc-s1": {"Version": "16.2.0-4", "Depends": "gcc-16-base (= 16.2.0-4), libc6 (>= 2.35)"},
    "gcc-16-base": {"Version": "16.2.0-4"},
    "media-types": {"Version": "14.0.0"},
    "python3-drgn": {"Version": "0.3.0-1", "Depends": "python3:any, virtual-only | libdw1t64 (>= 0.191)"},
    "libdw1t64": {"Version": "0.196-1"},
}


@pytest.fixture
def archive(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    asked: List[str] = []

    def show(spec: str, arch: str = "amd64") -> List[Dict[str, str]]:
        asked.append(spec)
        name, _, suite = spec.partition("/")
        assert arch == "arm64" and suite == pyroot.SUITE
        return [ARCHIVE[name]] if name in ARCHIVE else []

    monkeypatch.setattr(pyroot.apt, "show", show)
    return asked


def test_closure_follows_depends_and_pre_depends(archive: List[str]) -> None:
    found = pyroot.closure(["python3"], "arm64")
    assert found == {n: ARCHIVE[n]["Version"] for n in (
        "python3", "python3.14", "libpython3-stdlib", "libpython3.14-stdlib", "libc6", "libgcc-s1",
        "gcc-16-base", "media-types")}
    # tzdata and debconf are left out, and never looked up.
    assert not any(spec.split("/")[0] in pyroot.LEFT_OUT for spec in archive)


def test_closure_takes_the_first_alternative_apt_knows(archive: List[str]) -> None:
    found = pyroot.closure(["python3-drgn"], "arm64")
    assert "libdw1t64" in found and "virtual-only" not in found and "python3" in found


def test_closure_refuses_what_the_suite_lacks(archive: List[str]) -> None:
    with pytest.raises(LabError, match="offers no python3-nothing"):
        pyroot.closure(["python3-nothing"], "arm64")
    ARCHIVE["broken"] = {"Version": "1", "Depends": "gone | also-gone"}
    try:
        with pytest.raises(LabError, match="broken depends on gone | also-gone"):
            pyroot.closure(["broken"], "arm64")
    finally:
        del ARCHIVE["broken"]


def test_usr_merge_moves_top_level_directories_into_usr(tmp_path: Path) -> None:
    (tmp_path / "lib" / "aarch64-linux-gnu").mkdir(parents=True)
    (tmp_path / "lib" / "aarch64-linux-gnu" / "libc.so.6").write_text("libc")
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "ld-linux-aarch64.so.1").write_text("ld")
    pyroot._usr_merge(tmp_path)
    for name in ("bin", "sbin", "lib"):
        assert (tmp_path / name).is_symlink() and str((tmp_path / name).readlink()) == f"usr/{name}"
    assert (tmp_path / "lib" / "aarch64-linux-gnu" / "libc.so.6").read_text() == "libc"
    assert (tmp_path / "lib" / "ld-linux-aarch64.so.1").read_text() == "ld"


class FakeGuest:
    """Records the commands the lab would run in an arm64 guest."""

    def __init__(self) -> None:
        self.kernel = SimpleNamespace(arch="arm64", vmlinux="/cache/kernels/7.2-arm64/vmlinux")
        self.out_dir = Path("/nonexistent")
        self.commands: List[str] = []

    def run(self, cmd: str, timeout: float = 120.0):
        self.commands.append(cmd)
        return 0, ""


def test_live_audit_runs_in_the_python_root(tmp_path: Path) -> None:
    guest = FakeGuest()
    args = ["--comm", "a b'$(id)", "--json"]
    argv, where = lab_cli.audit_argv(guest, "live", args, tmp_path)
    assert where == "guest"
    mount, = guest.commands  # the root is mounted before the audit
    assert f"pyroot {pyroot.GUEST_ROOT}" in mount and f"proc {pyroot.GUEST_ROOT}/proc" in mount
    assert argv[argv.index("chroot") + 1] == pyroot.GUEST_ROOT
    assert argv[argv.index("-s") + 1] == "/kernel/vmlinux" and "-k" in argv
    assert argv[-len(args):] == args
    assert shlex.split(shlex.join(argv)) == argv


def test_a_failed_mount_is_an_error(tmp_path: Path) -> None:
    guest = FakeGuest()
    guest.run = lambda cmd, timeout=120.0: (255, "mount: mounting pyroot on /pyroot failed: No such device")
    with pytest.raises(LabError, match="mounting the Python root in the guest failed.*No such device"):
        lab_cli.audit_argv(guest, "live", [], tmp_path)


def test_qemu_shares_the_root_kernel_package_and_byte_code_cache(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setattr(pyroot, "root_path", lambda arch: tmp_path / "root")
    monkeypatch.setattr(pyroot, "cache_dir", lambda: tmp_path)
    kernel = SimpleNamespace(arch="arm64", vmlinux=str(tmp_path / "k" / "vmlinux"))
    args = pyroot.qemu_args(kernel)
    fsdevs = [args[i + 1] for i, a in enumerate(args) if a == "-fsdev"]
    by_tag = {f.split(",")[1][3:]: f for f in fsdevs}
    assert set(by_tag) == {"pyroot", "kernel", "p2p", "pycache"}
    assert f"path={tmp_path / 'root'}," in by_tag["pyroot"] and f"path={tmp_path / 'k'}," in by_tag["kernel"]
    assert by_tag["p2p"].split("path=")[1].split(",")[0].endswith("/drgn_p2p")
    assert all("readonly=on" in by_tag[t] for t in ("pyroot", "kernel", "p2p"))
    assert "readonly" not in by_tag["pycache"]


def test_a_baseline_file_reaches_the_root_through_the_out_share(tmp_path: Path) -> None:
    guest = FakeGuest()
    guest.out_dir = tmp_path / "out"
    guest.out_dir.mkdir()
    known = tmp_path / "known.toml"
    known.write_text("# no findings are known\n")
    for args in (["--baseline", str(known), "--json"], [f"--baseline={known}", "--json"]):
        argv, _ = lab_cli.audit_argv(guest, "live", args, tmp_path)
        given = argv[argv.index("-k") + 1:]
        path = given[1] if given[0] == "--baseline" else given[0].partition("=")[2]
        assert path.startswith("/tmp/out/") and given[-1] == "--json", given
        assert (guest.out_dir / path[len("/tmp/out/"):]).read_text() == known.read_text()
    assert "mount -o bind /out /pyroot/tmp/out" in guest.commands[0]
