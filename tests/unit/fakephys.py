# SPDX-License-Identifier: GPL-2.0-or-later
"""A fake physical memory of 4 KiB pages for page-table walker tests: pages
are built from ``{index: entry}`` dicts (the rest zero), reads of any other
address raise :class:`drgn.FaultError` as drgn does for memory it cannot
read, and every read is counted."""

import struct
from typing import Callable, Dict, List, Mapping, Optional

import drgn

#: _PAGE_TABLE: PRESENT | RW | USER | ACCESSED | DIRTY, what a table entry carries.
TABLE_BITS = 0x67
#: A present, writable user 4 KiB leaf (PRESENT | RW | USER | ACCESSED | DIRTY) with NX.
PTE_BITS = 0x8000_0000_0000_0067
#: A present huge PMD/PUD leaf: PTE_BITS | PSE.
HUGE_BITS = PTE_BITS | 0x80

PAGE = 4096


def table_entry(phys: int) -> int:
    """An entry pointing at the table at *phys*."""
    return phys | TABLE_BITS


def pte(pfn: int) -> int:
    """A present 4 KiB leaf mapping *pfn*."""
    return (pfn << 12) | PTE_BITS


def page(entries: Mapping[int, int]) -> bytes:
    """A 4 KiB table with ``entries[i]`` at index *i* and zeros elsewhere."""
    values = [0] * 512
    for index, value in entries.items():
        values[index] = value
    return struct.pack("<512Q", *values)


class FakePhys:
    """Physical memory: ``pages[phys]`` (4 KiB aligned) → 4096 bytes.

    :param on_read: called after each successful read with ``(self, phys)``;
        it may change :attr:`pages` (a kernel changing its tables under a
        live walk) or raise.
    """

    def __init__(
        self,
        pages: Optional[Mapping[int, bytes]] = None,
        on_read: Optional[Callable[["FakePhys", int], None]] = None,
    ) -> None:
        self.pages: Dict[int, bytes] = dict(pages or {})
        self.on_read = on_read
        self.reads: List[int] = []
        self.faults: List[int] = []

    def set(self, phys: int, entries: Mapping[int, int]) -> None:
        """Put a table with *entries* at *phys*."""
        self.pages[phys] = page(entries)

    def read(self, phys: int, size: int) -> bytes:
        """drgn's ``prog.read(phys, size, True)``."""
        self.reads.append(phys)
        data = self.pages.get(phys)
        if data is None:
            self.faults.append(phys)
            raise drgn.FaultError("could not find memory segment", phys)
        if self.on_read is not None:
            self.on_read(self, phys)
        return data[:size]
