# SPDX-License-Identifier: GPL-2.0-or-later
"""Which compiler package, program and make arguments build modules for a
kernel of each Debian architecture (the names are Debian's: gcc-N for the
host, gcc-N-TRIPLET for a cross compiler whose program is TRIPLET-gcc-N)."""

import pytest

from drgn_p2p.lab import kmod


def test_host_kernels_use_the_suites_gcc():
    assert kmod.compiler("gcc-16") == kmod.Compiler("gcc-16", "gcc-16", ())
    assert kmod.compiler("gcc-12", "amd64").make_args == ()


def test_arm64_kernels_cross_compile():
    gcc = kmod.compiler("gcc-16", "arm64")
    assert gcc.package == "gcc-16-aarch64-linux-gnu"
    assert gcc.binary == "aarch64-linux-gnu-gcc-16"
    assert gcc.make_args == ("ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-")


@pytest.mark.parametrize("package, binary", [("gcc-16", "gcc-16"), ("gcc-12", "gcc-12"),
                                             ("gcc-16-aarch64-linux-gnu", "aarch64-linux-gnu-gcc-16")])
def test_the_chroot_finds_each_compilers_program(package, binary):
    assert kmod._compiler_binary(package) == binary


def test_an_architecture_without_a_cross_compiler_is_unsupported():
    with pytest.raises(kmod.ModuleUnsupported, match="riscv64"):
        kmod.compiler("gcc-16", "riscv64")
