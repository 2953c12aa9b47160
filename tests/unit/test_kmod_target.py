# SPDX-License-Identifier: GPL-2.0-or-later
"""Where a module build takes a build tree's pieces from: test_hmm's sources
from the tree itself (built in place, or through ``make O=``'s ``source``
link), the cache key from the tree's .config and Module.symvers, and a tree
that ``make`` has not finished is refused before anything is built."""

from pathlib import Path

import pytest

from drgn_p2p.lab import LabError, kmod
from drgn_p2p.lab.kernels import Kernel


def _tree(root: Path, hmm: bool = True) -> Path:
    for rel in (".config", "Module.symvers", "scripts/mod/modpost"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    if hmm:
        (root / "lib").mkdir(exist_ok=True)
        for name in ("test_hmm.c", "test_hmm_uapi.h"):
            (root / "lib" / name).write_text(name)
    return root


def test_test_hmm_comes_from_the_tree_built_in_place(tmp_path: Path) -> None:
    assert kmod._tree_sources(_tree(tmp_path)) == tmp_path.resolve()
    assert kmod._tree_sources(_tree(tmp_path / "bare", hmm=False)) is None


def test_test_hmm_comes_from_the_source_of_an_out_of_tree_build(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    out = _tree(tmp_path / "out", hmm=False)
    (out / "source").symlink_to(src)
    assert kmod._tree_sources(out) == src.resolve()


def test_the_key_follows_config_and_symvers(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    before = kmod.Headers(tree=tree).key()
    (tree / "Module.symvers").write_text("changed")
    assert kmod.Headers(tree=tree).key() != before
    assert kmod.Headers(package_version="7.2.13-1").key() == ("7.2.13-1",)


def _kernel(build: Path, cc) -> Kernel:
    return Kernel(name="user", kver="7.2.13", dir=build, vmlinux=None, vmlinuz=build / "bzImage",
                  config={"CONFIG_DEVICE_PRIVATE": "y"}, modules_dir=None, cc=cc, build=build)


def test_an_unfinished_tree_is_refused(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "Module.symvers").unlink()
    with pytest.raises(LabError, match="lacks Module.symvers: run make"):
        kmod.module_target(_kernel(tree, "gcc-16"))


def test_a_tree_without_gcc_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="names no gcc"):
        kmod.module_target(_kernel(_tree(tmp_path), None))


def test_an_installed_kernel_is_built_for_against_its_build_link(tmp_path: Path) -> None:
    from drgn_p2p.lab.kernels import user_kernel

    tree = _tree(tmp_path / "linux")
    (tree / ".config").write_text('CONFIG_CC_VERSION_TEXT="gcc-14 (Debian 14.2.0-19) 14.2.0"\n')
    modules = tmp_path / "lib" / "modules" / "7.2.13"
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text("")
    (modules / "build").symlink_to(tree)
    for name in ("bzImage", "vmlinux"):
        (tmp_path / name).write_text("")
    kernel = user_kernel(tmp_path / "bzImage", tmp_path / "vmlinux", modules, tree / ".config")
    assert kernel.build == tree.resolve() and kernel.cc == "gcc-14"
    (modules / "build").unlink()
    assert user_kernel(tmp_path / "bzImage", tmp_path / "vmlinux", modules, tree / ".config").build is None
