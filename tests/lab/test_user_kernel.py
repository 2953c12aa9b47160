# SPDX-License-Identifier: GPL-2.0-or-later
"""
``drgn-p2p lab run`` on a user's kernel laid out the way Debian's packages lay
it out: the image packages of a lab kernel (``linux-image-KVER-unsigned`` for
6.x; ``linux-base``/``linux-binary``/``linux-modules`` for 7.x) extracted with
``dpkg-deb -x`` — ``boot/vmlinuz-KVER`` and ``boot/config-KVER`` side by side
(7.x: ``usr/lib/modules/KVER/vmlinuz`` and ``config``), a module tree without
``modules.dep`` — and the vmlinux where the ``-dbg`` package puts it. The
kernel must boot with its modules, every scenario its config allows must be
held (none reported as lacking an option it has; device-private with test_hmm
built against the kernel's Debian headers package), and a kernel whose config
cannot be found is refused before it boots, saying where the lab looked.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, NamedTuple

import pytest

from drgn_p2p.lab import apt, cache_dir
from drgn_p2p.lab import kernels as lab_kernels

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
KERNELS = ["newest", "6.12"]


class Package(NamedTuple):
    kver: str
    root: Path
    image: Path
    vmlinux: Path


def _debian_layout(name: str) -> Package:
    """The image and -dbg packages of lab kernel *name*, extracted as dpkg would
    install them into ``<cache>/packages/KVER/`` (downloaded once)."""
    kernel = lab_kernels.ensure_kernel(name)
    kver = kernel.kver
    root = cache_dir() / "packages" / kver
    vmlinux = root / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{kver}"
    if not (root / ".complete").exists():
        record = json.loads((kernel.dir / "kernel.json").read_text())
        packages: Dict[str, str] = record["packages"]
        (dbg,) = [p for p in packages if p.endswith("-dbg")]
        images = [p for p in packages if p != dbg]
        shutil.rmtree(root, ignore_errors=True)
        debs = root / ".debs"
        apt.update()
        for deb in apt.download([f"{p}={packages[p]}" for p in images], debs):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        (deb,) = apt.download([f"{dbg}={packages[dbg]}"], debs)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            lab_kernels._extract_debug(deb, kver, Path(tmp))  # the real file, where -dbg links it
            vmlinux.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / "vmlinux"), str(vmlinux))
        shutil.rmtree(debs)
        (root / ".complete").touch()
    for image in (root / "boot" / f"vmlinuz-{kver}", root / "usr" / "lib" / "modules" / kver / "vmlinuz"):
        if image.is_file():
            break
    else:
        raise AssertionError(f"no kernel image in the {kver} packages")
    for tree in (root / "lib" / "modules" / kver, root / "usr" / "lib" / "modules" / kver):
        assert not (tree / "modules.dep").exists(), "a package ships no modules.dep"
    return Package(kver, root, image, vmlinux)


@pytest.fixture(scope="module", params=KERNELS)
def package(request, lab_session) -> Iterator[Package]:
    lab_session.close()  # at most one guest alive
    yield _debian_layout(request.param)


def _lab_run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drgn_p2p", "lab", "run", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)


def _package_config(package: Package) -> Dict[str, str]:
    """The config the package ships beside its image (6.x: boot/config-KVER; 7.x: config)."""
    for path in (package.image.parent / f"config-{package.kver}", package.image.parent / "config"):
        if path.is_file():
            return lab_kernels.parse_config(path.read_text())
    raise AssertionError(f"no config beside {package.image}")


def test_a_kernel_laid_out_as_its_package_boots_with_its_config_and_modules(package: Package) -> None:
    # device-private too where the config allows it: test_hmm is built against the
    # kernel's Debian headers package, told from its release alone.
    wanted = ["anon", "pcibar"] + (["device-private"] if _package_config(package).get("CONFIG_DEVICE_PRIVATE") == "y"
                                   else [])
    proc = _lab_run("--bzimage", str(package.image), "--vmlinux", str(package.vmlinux),
                    *[arg for name in wanted for arg in ("--scenario", name)], "--via", "qemu", "--", "--json")
    assert proc.returncode in (0, 1), proc.stderr[-4000:]
    assert "kernel lacks" not in proc.stderr and "skipped" not in proc.stderr, proc.stderr
    assert "error:" not in proc.stderr, proc.stderr
    (line,) = proc.stdout.splitlines()
    doc = json.loads(line)
    assert doc["via"] == "qemu" and doc["audit"]["kernel"]["release"] == package.kver
    held = {m.split()[0] for m in proc.stderr.splitlines() if m.startswith("  ") and " pid " in m}
    assert held >= set(wanted), proc.stderr
    bars = [v for v in doc["audit"]["vmas"] if "no-memmap" in v["pages"]]
    assert bars and all({"PFNMAP", "IO"} <= set(v["flag_names"]) for v in bars)


def test_a_kernel_without_a_config_is_refused_before_it_boots(package: Package, tmp_path: Path) -> None:
    alone = tmp_path / f"vmlinuz-{package.kver}"
    alone.symlink_to(package.image)
    proc = _lab_run("--bzimage", str(alone), "--vmlinux", str(package.vmlinux), "--via", "qemu", timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"error: no config found for {package.kver} (looked in {tmp_path}/config-{package.kver}, ")
    assert last.endswith("); pass --config"), last
    assert "booting" not in proc.stderr
