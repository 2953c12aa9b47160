# SPDX-License-Identifier: GPL-2.0-or-later
"""makedumpfile's flattened format: the lab reassembles QEMU's flattened kdump
files (:func:`drgn_p2p.lab.vm.reassemble`), so that its dumps open without a
warning, and a flattened vmcore cut short is told as such
(:func:`drgn_p2p.flattened.cut_short`)."""

import io

import struct
from pathlib import Path

import pytest

from drgn_p2p.flattened import cut_short
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


def test_a_whole_file_is_not_cut_short() -> None:
    assert cut_short(io.BytesIO(_flattened([(0, b"0123456789"), (4096, b"x" * 100)]))) == ""


def test_a_cut_inside_a_record_says_where() -> None:
    whole = _flattened([(0, b"0123456789"), (4096, b"x" * 100)])
    # the second record's data starts after the header, the first record (16 + 10) and its own header (16)
    data = 4096 + 16 + 10 + 16
    assert cut_short(io.BytesIO(whole[:data + 40])) == (
        f"it ends at byte {data + 40}, 60 bytes before the end of a record of 100 bytes that starts at byte {data}")


def test_a_cut_between_records_misses_the_end_marker() -> None:
    whole = _flattened([(0, b"0123456789")])
    assert cut_short(io.BytesIO(whole[:-16])) == f"it ends at byte {len(whole) - 16}, before its end marker"
    assert cut_short(io.BytesIO(whole[:-3])) == f"it ends at byte {len(whole) - 3}, before its end marker"
