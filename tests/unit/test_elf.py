# SPDX-License-Identifier: GPL-2.0-or-later
"""What :mod:`drgn_p2p.elf` reads from an ELF header without drgn: the
architecture (for QEMU kdump files, which do not record it)."""

import struct
import sys
from pathlib import Path

import pytest

from drgn_p2p.elf import elf_architecture


def _ehdr(machine: int, klass: int = 2, data: int = 1) -> bytes:
    ident = b"\x7fELF" + bytes([klass, data, 1]) + bytes(9)
    return ident + struct.pack("<HHI", 2, machine, 1) + bytes(64 - 24)


@pytest.mark.parametrize("machine, arch", [(62, "x86_64"), (183, "aarch64"), (3, None), (40, None)])
def test_architecture_from_e_machine(tmp_path: Path, machine: int, arch) -> None:
    (tmp_path / "vmlinux").write_bytes(_ehdr(machine))
    assert elf_architecture(tmp_path / "vmlinux") == arch


@pytest.mark.parametrize("content", [b"", b"not an ELF file\n", _ehdr(62, klass=1), _ehdr(62, data=2)])
def test_not_a_64_bit_little_endian_elf(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "f").write_bytes(content)
    assert elf_architecture(tmp_path / "f") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the running interpreter")
def test_the_interpreter_is_this_machine(tmp_path: Path) -> None:
    import platform

    expected = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(platform.machine())
    assert elf_architecture(Path(sys.executable).resolve()) == expected
