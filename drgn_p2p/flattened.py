# SPDX-License-Identifier: GPL-2.0-or-later
"""
makedumpfile's *flattened* format (what ``makedumpfile -F`` and QEMU's
``dump-guest-memory`` with ``kdump-*`` write to a pipe or file).

The file is a 4 KiB ``struct makedumpfile_header`` (its signature
"makedumpfile") followed by records of ``struct makedumpfile_data_header
{int64_t offset, buf_size;}`` (big-endian), each followed by *buf_size* bytes
that belong at *offset* of the kdump-compressed file, and ended by a record
whose offset is -1 (makedumpfile's ``makedumpfile.h``).
"""

import struct
from typing import BinaryIO, Iterator, NamedTuple

__all__ = ("SIGNATURE", "FlattenedError", "Record", "records", "is_flattened", "cut_short")

SIGNATURE = b"makedumpfile"
HEADER_SIZE = 4096
_RECORD = struct.Struct(">qq")


class FlattenedError(Exception):
    """A flattened file that is not one, or is cut short."""


class Record(NamedTuple):
    offset: int  # where the data belongs in the kdump-compressed file
    size: int
    position: int  # where the data starts in the flattened file


def records(f: BinaryIO) -> Iterator[Record]:
    """Every data record of the flattened file *f*, in file order.

    The caller reads (or skips) each record's data before asking for the next;
    the iterator seeks past whatever is left of it.

    :raises FlattenedError: if *f* is not flattened, or ends before its end
        marker or inside a record.
    """
    if not f.read(HEADER_SIZE).startswith(SIGNATURE):
        raise FlattenedError("not in makedumpfile's flattened format")
    position = HEADER_SIZE
    while True:
        f.seek(position)
        raw = f.read(_RECORD.size)
        if len(raw) < _RECORD.size:
            raise FlattenedError(f"ends at byte {position + len(raw)}, before its end marker")
        offset, size = _RECORD.unpack(raw)
        if offset < 0:
            return
        if size < 0:
            raise FlattenedError(f"has a record of {size} bytes at byte {position}")
        data = position + _RECORD.size
        yield Record(offset, size, data)
        position = data + size


def is_flattened(head: bytes) -> bool:
    """Whether a file starting with *head* is in the flattened format."""
    return head.startswith(SIGNATURE)


def cut_short(f: BinaryIO) -> str:
    """Why flattened file *f* cannot be whole ("" if its records are whole):
    where it ends, against the record that runs past its end."""
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    try:
        for record in records(f):
            if record.position + record.size > size:
                missing = record.position + record.size - size
                return (f"it ends at byte {size}, {missing} bytes before the end of a record of {record.size} bytes "
                        f"that starts at byte {record.position}")
    except FlattenedError as e:
        return f"it {e}"
    return ""
