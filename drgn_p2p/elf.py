# SPDX-License-Identifier: GPL-2.0-or-later
"""
ELF files
---------

Just enough ELF reading to check a vmlinux before drgn sees it: its sections
(is there ``.debug_info``?) and its GNU build ID (is it the target's kernel?).
"""

import struct
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Tuple

__all__ = ("elf_sections", "elf_build_id", "elf_architecture", "has_debug_info")


def elf_sections(path: Path) -> Dict[str, Tuple[int, int]]:
    """Return ``{name: (offset, size)}`` of the sections of a 64-bit little-endian ELF file."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise ValueError(f"{path} is not a 64-bit little-endian ELF file")
        shoff, = struct.unpack_from("<Q", ident, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ident, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        headers = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
        _, _, _, _, stroff, strsize = headers[shstrndx]
        f.seek(stroff)
        strtab = f.read(strsize)
    sections = {}
    for name_off, _, _, _, offset, size in headers:
        name = strtab[name_off : strtab.index(b"\0", name_off)].decode()
        sections[name] = (offset, size)
    return sections


#: ``e_machine`` values of the architectures drgn reads, by drgn's
#: :class:`drgn.Architecture` name (``<elf.h>``: EM_X86_64, EM_AARCH64).
_MACHINES = {62: "x86_64", 183: "aarch64"}


def elf_architecture(path: Path) -> Optional[str]:
    """
    Return the architecture an ELF file was built for, from ``e_machine`` of
    its ``Elf64_Ehdr`` (``"x86_64"``, ``"aarch64"``), or None if it is not a
    64-bit little-endian ELF file of one of them.
    """
    with open(path, "rb") as f:
        ident = f.read(20)
    if len(ident) < 20 or ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        return None
    machine, = struct.unpack_from("<H", ident, 0x12)
    return _MACHINES.get(machine)


def _notes(data: bytes) -> Iterator[Tuple[bytes, int, bytes]]:
    """Yield ``(name, type, desc)`` of the ELF notes packed in ``data``."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        name_at = pos + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        yield data[name_at : name_at + namesz].rstrip(b"\0"), ntype, data[desc_at : desc_at + descsz]
        pos = desc_at + (descsz + 3) // 4 * 4


def elf_build_id(path: Path, sections: Optional[Mapping[str, Tuple[int, int]]] = None) -> Optional[str]:
    """
    Return the GNU build ID of an ELF file as hex, or None if it has none.
    vmlinux keeps it among the other notes of ``.notes``.
    """
    sections = elf_sections(path) if sections is None else sections
    for name in (".note.gnu.build-id", ".notes"):
        if name not in sections:
            continue
        offset, size = sections[name]
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        for owner, ntype, desc in _notes(data):
            if owner == b"GNU" and ntype == 3:  # NT_GNU_BUILD_ID
                return desc.hex()
    return None


def has_debug_info(path: Path) -> bool:
    """Whether ELF file *path* has a ``.debug_info`` section (False if not ELF)."""
    try:
        return ".debug_info" in elf_sections(path)
    except (OSError, ValueError, struct.error, IndexError):
        return False
