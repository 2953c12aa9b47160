# SPDX-License-Identifier: GPL-2.0-or-later
"""``lab run --kernel-dir BUILD`` and ``--kernel PATH``: which files a build
tree or an image path resolve to, and the one-line errors (exit 2) for a tree
that is not built or a --kernel that is neither a lab kernel nor a file. The
boot itself is tested in tests/lab/test_kernel_dir.py."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from drgn_p2p.cli import cli
from drgn_p2p.lab import cli as lab_cli
from drgn_p2p.lab import kernels


@pytest.mark.parametrize("args, message", [
    (["--kernel-dir", "{tmp}"], "is not a built kernel tree: no arch/x86/boot/bzImage, vmlinux, .config"),
    (["--kernel-dir", "{tmp}/nope"], "nope is not a directory"),
    (["--kernel", "{tmp}/nope"], "no such kernel image file (nor a lab kernel's name)"),
    (["--kernel-dir", "{tmp}", "--bzimage", "x"], "--kernel-dir takes the image, vmlinux and .config from the build tree"),
])
def test_bad_kernel_dir_or_path_is_one_error_line(tmp_path: Path, args, message) -> None:
    r = CliRunner().invoke(cli, ["lab", "run", "--via", "qemu", *[a.format(tmp=tmp_path) for a in args]])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert message in r.output.replace("\n", ""), r.output


def test_kernel_dir_resolves_the_build_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for rel in ("arch/x86/boot/bzImage", "vmlinux", ".config"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "lib/modules/6.99.0").mkdir(parents=True)
    seen = []
    monkeypatch.setattr(kernels, "bzimage_release", lambda path: "6.99.0")
    monkeypatch.setattr(kernels, "user_kernel", lambda *args, **kw: seen.append((args, kw)) or "kernel")
    assert lab_cli._kernel(None, None, None, None, None, kernel_dir=str(tmp_path)) == "kernel"
    assert seen == [((tmp_path / "arch/x86/boot/bzImage", tmp_path / "vmlinux", tmp_path / "lib/modules/6.99.0",
                      tmp_path / ".config"), {"build": tmp_path})]
    # A lab kernel's name is a lab kernel; any other --kernel is an image file, with --vmlinux.
    image = tmp_path / "arch/x86/boot/bzImage"
    assert lab_cli._kernel(str(image), None, str(tmp_path / "vmlinux"), None, None) == "kernel"
    assert seen[-1] == ((image, tmp_path / "vmlinux", None, None), {})


def test_in_place_modules_need_every_module_of_modules_order(tmp_path: Path) -> None:
    (tmp_path / "modules.order").write_text("drivers/nvdimm/nd_pmem.o\n")
    with pytest.raises(kernels.LabError, match="drivers/nvdimm/nd_pmem.ko of modules.order is not built"):
        kernels._in_place_modules(tmp_path, "6.99.0")
