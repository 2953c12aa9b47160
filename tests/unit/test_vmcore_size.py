# SPDX-License-Identifier: GPL-2.0-or-later
"""How big a vmcore must be: the end of the last ELF segment, or of the last
page's data of a kdump-compressed file, computed on files built here with
the layouts of ``elf.h`` and makedumpfile's ``diskdump_mod.h``; a file cut
shorter than that is reported as truncated."""

import logging
import struct
from pathlib import Path

import pytest

from drgn_p2p.target import _elf_core_size, _kdump_size

PT_LOAD, PT_NOTE = 1, 4


def elf_core(path: Path, segments) -> int:
    """A 64-bit ELF core with program headers ``(type, offset, filesz)``; returns the end of the data."""
    phoff, phentsize = 64, 56
    ehdr = bytearray(64)
    ehdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", ehdr, 0x10, 4, 62)  # ET_CORE, EM_X86_64
    struct.pack_into("<Q", ehdr, 0x20, phoff)
    struct.pack_into("<HH", ehdr, 0x36, phentsize, len(segments))
    table = b"".join(struct.pack("<IIQQQQQQ", t, 0, off, 0, 0, size, size, 0) for t, off, size in segments)
    end = max(off + size for t, off, size in segments if t in (PT_LOAD, PT_NOTE))
    path.write_bytes(bytes(ehdr) + table + bytes(end - 64 - len(table)))
    return end


def kdump(path: Path, dumped_pages: int, block_size: int = 4096, sub_hdr_size: int = 1, bitmap_blocks: int = 2) -> int:
    """A kdump-compressed file with *dumped_pages* pages of 100 bytes each; returns its full size."""
    header = bytearray(block_size)
    header[:8] = b"KDUMP   "
    struct.pack_into("<iiI", header, 428, block_size, sub_hdr_size, bitmap_blocks)
    half = bitmap_blocks * block_size // 2
    bitmap2 = ((1 << dumped_pages) - 1).to_bytes(half, "little")
    descs = (1 + sub_hdr_size + bitmap_blocks) * block_size
    data = descs + dumped_pages * 24
    table = b"".join(struct.pack("<qIIQ", data + 100 * i, 100, 1, 0) for i in range(dumped_pages))
    body = (bytes(header) + bytes(sub_hdr_size * block_size) + bytes(half) + bitmap2 + table)
    assert len(body) == data
    path.write_bytes(body + bytes(100 * dumped_pages))
    return data + 100 * dumped_pages


def test_elf_core_size(tmp_path: Path) -> None:
    f = tmp_path / "core"
    end = elf_core(f, [(PT_NOTE, 4096, 300), (PT_LOAD, 8192, 4096 * 3), (PT_LOAD, 8192 + 4096 * 3, 4096), (6, 0, 10**9)])
    assert end == 8192 + 4096 * 4
    assert _elf_core_size(str(f)) == end  # PT_PHDR-like other types are ignored


def test_kdump_size(tmp_path: Path) -> None:
    f = tmp_path / "kdump"
    size = kdump(f, dumped_pages=37)
    assert _kdump_size(str(f)) == size == f.stat().st_size


def test_kdump_size_of_garbage_is_unknown(tmp_path: Path) -> None:
    f = tmp_path / "kdump"
    f.write_bytes(b"KDUMP   ".ljust(8192, b"\0"))
    assert _kdump_size(str(f)) is None


@pytest.mark.parametrize("kind", ["elf", "kdump"])
def test_truncated_vmcore_is_reported_when_it_opens(kind: str, tmp_path: Path) -> None:
    """drgn opens the file (faked here); the size check then warns with what is missing."""
    from types import SimpleNamespace

    from drgn_p2p import target

    f = tmp_path / "vmcore"
    full = elf_core(f, [(PT_LOAD, 4096, 4096 * 4)]) if kind == "elf" else kdump(f, dumped_pages=9)
    with open(f, "r+b") as fh:
        fh.truncate(full - 50)
    prog = SimpleNamespace(set_core_dump=lambda path: None)
    messages = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[assignment]
    logger = logging.getLogger("drgn_p2p")
    logger.addHandler(handler)  # directly: the CLI, run in process by other tests, stops propagation
    try:
        target._attach_core(prog, str(f))
    finally:
        logger.removeHandler(handler)
    assert messages == [f"vmcore {f} is truncated: {full - 50} of {full} bytes (100%); memory past its end cannot be read"]
