# SPDX-License-Identifier: GPL-2.0-or-later
"""The lab reassembles QEMU's makedumpfile-flattened kdump files
(:func:`drgn_p2p.lab.vm.reassemble`), so that its dumps open without a warning."""

import struct
from pathlib import Path

import pytest

from drgn_p2p.lab import LabError
from drgn_p2p.lab.vm import reassemble


def _flattened(records) -> bytes:
    head = (b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)).ljust(4096, b"\0")
    body = b"".join(struct.pack(">qq", off, len(data)) + data for off, data in records)
    return head + body + struct.pack(">qq", -1, -1)


def test_records_land_at_their_offsets(tmp_path: Path) -> None:
    # QEMU writes the header, then the bitmaps and pages, then rewrites earlier blocks.
    records = [(0, b"KDUMP   " + b"h" * 8), (8192, b"page" * 3), (16, b"sub"), (8192 + 12, b"!")]
    (tmp_path / "flat").write_bytes(_flattened(records))
    out = reassemble(tmp_path / "flat", tmp_path / "kdump").read_bytes()
    assert out[:8] == b"KDUMP   " and out[16:19] == b"sub" and out[8:16] == b"h" * 8
    assert out[8192:] == b"pagepagepage!"


@pytest.mark.parametrize("cut", [4096 + 8, 4096 + 16 + 5])
def test_a_cut_file_is_an_error(tmp_path: Path, cut: int) -> None:
    (tmp_path / "flat").write_bytes(_flattened([(0, b"0123456789")])[:cut])
    with pytest.raises(LabError, match="ends"):
        reassemble(tmp_path / "flat", tmp_path / "kdump")


def test_not_flattened(tmp_path: Path) -> None:
    (tmp_path / "kdump").write_bytes(b"KDUMP   ".ljust(8192, b"\0"))
    with pytest.raises(LabError, match="not in makedumpfile's flattened format"):
        reassemble(tmp_path / "kdump", tmp_path / "out")
