# SPDX-License-Identifier: GPL-2.0-or-later
"""What the walk reads of a VMA's ``struct vm_operations_struct`` and file for
the GUP prediction: which hooks the ops have, and ``vma_needs_dirty_tracking()``.

The program is a small x86-64 one made here: the structures hold only the
members the walk reads, at offsets of our choosing, in memory we lay out.
"""

import struct
from typing import Dict

import drgn
import pytest

from drgn_p2p.walk import OpsHooks, _dirty_tracking, _file_writeback, _ops_hooks

OPS, FILE, MAPPING, INODE, SB, BDI, BLOCKDEV_SB = (0x1000 * i for i in range(1, 8))
ACCESS_FN = 0xFFFF_FFFF_8100_0000
WRITE, SHARED, PFNMAP = 1 << 1, 1 << 3, 1 << 10


def _program(words: Dict[int, int]) -> drgn.Program:
    """An x86-64 program whose memory holds *words* (address → u64), with the
    structures the walk reads and the symbol ``generic_access_phys``."""
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                      drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    u64 = prog.int_type("unsigned long", 8, False)
    fn = prog.pointer_type(prog.void_type())

    def struct_of(name: str, *members) -> drgn.Type:
        return prog.struct_type(name, 8 * len(members),
                                [drgn.TypeMember(t, m, 64 * i) for i, (m, t) in enumerate(members)])

    bdi = struct_of("backing_dev_info", ("capabilities", u64))
    sb = struct_of("super_block", ("s_bdi", prog.pointer_type(bdi)))
    inode = struct_of("inode", ("i_sb", prog.pointer_type(sb)))
    mapping = struct_of("address_space", ("host", prog.pointer_type(inode)))
    types = {
        "vm_operations_struct": struct_of("vm_operations_struct", ("fault", fn), ("page_mkwrite", fn),
                                          ("pfn_mkwrite", fn), ("access", fn)),
        "file": struct_of("file", ("f_mapping", prog.pointer_type(mapping))),
    }

    def find_type(prog, kinds, name, filename):
        return types.get(name.removeprefix("struct "))

    def find_symbol(prog, name, address, one):
        if name == "generic_access_phys" or address == ACCESS_FN:
            return [drgn.Symbol("generic_access_phys", ACCESS_FN, 8, drgn.SymbolBinding.GLOBAL, drgn.SymbolKind.FUNC)]
        return []

    def find_object(prog, name, flags, filename):
        if name == "blockdev_superblock":
            return drgn.Object(prog, prog.pointer_type(sb), BLOCKDEV_SB)
        return None

    memory = bytearray(0x10000)
    for address, value in words.items():
        struct.pack_into("<Q", memory, address, value)
    prog.add_memory_segment(0, len(memory), lambda address, count, offset, physical: bytes(memory[offset:offset + count]))
    prog.register_type_finder("test", find_type, enable_index=0)
    prog.register_symbol_finder("test", find_symbol, enable_index=0)
    prog.register_object_finder("test", find_object, enable_index=0)
    return prog


def _ops(fault: int = 0, page_mkwrite: int = 0, pfn_mkwrite: int = 0, access: int = 0) -> Dict[int, int]:
    return {OPS: fault, OPS + 8: page_mkwrite, OPS + 16: pfn_mkwrite, OPS + 24: access}


def _file(sb: int, capabilities: int) -> Dict[int, int]:
    return {FILE: MAPPING, MAPPING: INODE, INODE: sb, SB: BDI, BDI: capabilities}


@pytest.mark.parametrize(
    "words,expected",
    [
        # uio_physical_vm_ops (drivers/uio/uio.c): access only.
        (_ops(access=ACCESS_FN), OpsHooks("generic_access_phys", False, False)),
        # tcp_vm_ops (net/ipv4/tcp.c): empty.
        (_ops(), OpsHooks(None, False, False)),
        # kernfs_vm_ops: fault and page_mkwrite; ext4_dax_vm_ops: pfn_mkwrite too.
        (_ops(fault=0xF1, page_mkwrite=0xF2), OpsHooks(None, True, True)),
        (_ops(fault=0xF1, pfn_mkwrite=0xF3), OpsHooks(None, True, True)),
    ],
)
def test_the_hooks_of_an_ops_are_read_once(words, expected):
    prog, cache = _program(words), {}
    assert _ops_hooks(prog, OPS, cache) == expected
    assert cache == {OPS: expected}
    assert _ops_hooks(prog, 0) == OpsHooks(None, True, False)  # no vm_ops: anonymous memory


@pytest.mark.parametrize(
    "flags,hooks,sb,capabilities,expected",
    [
        (WRITE | SHARED, OpsHooks(None, True, True), SB, 0, True),  # page_mkwrite
        (WRITE, OpsHooks(None, True, True), SB, 1, False),  # private: never
        (SHARED, OpsHooks(None, True, True), SB, 1, False),  # read-only: never
        (WRITE | SHARED, OpsHooks(None, True, False), SB, 1, True),  # BDI_CAP_WRITEBACK
        (WRITE | SHARED, OpsHooks(None, True, False), SB, 2, False),  # shmem, devices: noop bdi
        (WRITE | SHARED | PFNMAP, OpsHooks(None, True, False), SB, 1, False),  # no managed pages
        (WRITE | SHARED, OpsHooks(None, True, False), BLOCKDEV_SB, 0, True),  # a block device's disk
    ],
)
def test_vma_needs_dirty_tracking(flags, hooks, sb, capabilities, expected):
    prog = _program(_file(sb, capabilities))
    assert _dirty_tracking(prog, flags, FILE, hooks, {}) is expected


def test_an_unreadable_file_does_not_write_back():
    prog = _program({FILE: 0xDEAD_0000_0000})
    cache: Dict[int, bool] = {}
    assert _file_writeback(prog, FILE, cache) is False and cache == {FILE: False}
