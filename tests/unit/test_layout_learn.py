# SPDX-License-Identifier: GPL-2.0-or-later
"""What the layout stage learns from a kernel's symbols and types, on a drgn
Program that has only the symbols and objects a configuration would have:
facts that differ with the kernel's configuration, not its version."""

from typing import Dict, Iterable, Optional

import drgn
import pytest

from drgn_p2p import layout
from drgn_p2p.records import Learned


def _program(symbols: Iterable[str], swap_info_len: Optional[int] = None) -> drgn.Program:
    """An x86-64 Program whose only symbols are *symbols* and whose only object
    is ``swap_info[swap_info_len]`` (the length is MAX_SWAPFILES)."""
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64, drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    names = set(symbols)

    def find_symbol(prog, name, address, one):
        if name in names:
            return [drgn.Symbol(name, 0xFFFFFFFF81000000, 8, drgn.SymbolBinding.GLOBAL, drgn.SymbolKind.FUNC)]
        return []

    def find_object(prog, name, flags, filename):
        if name == "swap_info" and swap_info_len is not None:
            ptr = prog.pointer_type(prog.void_type())
            return drgn.Object(prog, prog.array_type(ptr, swap_info_len), address=0xFFFFFFFF82000000)
        return None

    prog.register_symbol_finder("test", find_symbol, enable_index=0)
    prog.register_object_finder("test", find_object, enable_index=0)
    return prog


@pytest.mark.parametrize(
    "symbols,expected",
    [
        (["follow_pfnmap_start", "transparent_hugepage_flags"], True),  # 6.12+, THP=y
        (["follow_pfnmap_start"], False),  # 6.12+, THP=n: no ARCH_SUPPORTS_PMD/PUD_PFNMAP
        (["transparent_hugepage_flags"], False),  # before the huge pfnmap series
    ],
)
def test_pmd_pud_special_needs_huge_pfnmap_and_thp(symbols, expected):
    learned: Dict[str, Learned] = {}
    assert layout._pxx_special(_program(symbols), "x86_64", learned) == (expected, expected)
    assert learned["has_pmd_special"].value is expected


_ALL = ("migration_entry_wait", "memory_failure")


@pytest.mark.parametrize(
    "version,symbols,max_swapfiles,expected",
    [
        # Debian 6.1 (MIGRATION, MEMORY_FAILURE, PTE_MARKER; no DEVICE_PRIVATE).
        ((6, 1), _ALL, 26, dict(hwpoison=26, migration_read=27, pte_marker=30, swapin_error=31)),
        # 6.1 without CONFIG_PTE_MARKER: SWP_SWAPIN_ERROR regardless.
        ((6, 1), _ALL, 27, dict(hwpoison=27, migration_read=28, pte_marker=None, swapin_error=31)),
        # 7.2 with DEVICE_PRIVATE but neither MIGRATION nor MEMORY_FAILURE.
        ((7, 2), ("make_device_exclusive",), 28,
         dict(hwpoison=None, migration_read=None, device_write=28, device_exclusive_write=30, pte_marker=31)),
        # 6.12 without MEMORY_FAILURE.
        ((6, 12), ("migration_entry_wait",), 28, dict(hwpoison=None, migration_read=28, migration_write=30, pte_marker=31)),
    ],
)
def test_swap_types_follow_the_configuration(version, symbols, max_swapfiles, expected):
    learned: Dict[str, Learned] = {}
    swap = layout._swap_types(_program(symbols, max_swapfiles), version, 46 - 12, learned)
    assert swap.max_swapfiles == max_swapfiles
    for name, value in expected.items():
        assert getattr(swap, name) == value, name
    assert learned["swap.migration"].value is ("migration_entry_wait" in symbols)


def test_huge_zero_pfn_is_read_again_on_each_audit():
    """The huge zero folio is freed by its shrinker and allocated anew: a
    cached layout must follow huge_zero_pfn, never keep a stale one."""
    import dataclasses

    from .layouts import L72

    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64, drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    values = {"zero_page_pfn": L72.zero_pfn, "huge_zero_pfn": 0x3E000}

    def find_object(prog, name, flags, filename):
        if name in values:
            return drgn.Object(prog, prog.int_type("unsigned long", 8, False), value=values[name])
        return None

    prog.register_object_finder("test", find_object, enable_index=0)
    prog.cache["drgn_p2p_layout"] = dataclasses.replace(L72, huge_zero_pfn=0x3E000)
    first = layout.read_layout(prog)
    assert first.huge_zero_pfn == 0x3E000
    values["huge_zero_pfn"] = 0x5E200  # shrunk and allocated again elsewhere
    assert layout.read_layout(prog).huge_zero_pfn == 0x5E200
    values["huge_zero_pfn"] = (1 << 64) - 1  # freed, not yet allocated again
    again = layout.read_layout(prog)
    assert again.huge_zero_pfn is None and again.learned["huge_zero_pfn"].value is None
    assert dataclasses.replace(again, huge_zero_pfn=0x3E000) == first


def test_vma_flags_from_the_bitmap_or_the_word():
    """7.x keeps VMA flags in ``vma_flags_t flags`` (a bitmap vm_flags aliases);
    earlier kernels only in ``vm_flags``. Both read as one integer."""
    from drgn_p2p.walk import _vma_flags

    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64, drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    ul = prog.int_type("unsigned long", 8, False)
    bitmap = prog.struct_type("vma_flags_t", 16, (drgn.TypeMember(prog.array_type(ul, 2), "__vma_flags", 0),))
    new = prog.struct_type("vm_area_struct", 16, (drgn.TypeMember(ul, "vm_flags", 0), drgn.TypeMember(bitmap, "flags", 0)))
    old = prog.struct_type("vm_area_struct", 8, (drgn.TypeMember(ul, "vm_flags", 0),))
    assert _vma_flags(drgn.Object(prog, old, value={"vm_flags": 0x10000400})) == 0x10000400
    assert _vma_flags(drgn.Object(prog, new, value={"flags": {"__vma_flags": [0x10000400, 0x3]}})) == 0x3 << 64 | 0x10000400


def test_a_vma_read_whole_gives_what_its_members_give():
    """A VMA costs one read of ``struct vm_area_struct`` at the offsets the
    layout learned from the type: the same values as reading each member
    (flags from the 7.x bitmap or the ``vm_flags`` word)."""
    from drgn_p2p.layout import vma_struct_of
    from drgn_p2p.walk import _vma_flags, vma_members

    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64, drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    ul = prog.int_type("unsigned long", 8, False)
    ptr = prog.pointer_type(prog.void_type())
    bitmap = prog.struct_type("vma_flags_t", 16, (drgn.TypeMember(prog.array_type(ul, 2), "__vma_flags", 0),))
    flags_union = prog.union_type(None, 16, (drgn.TypeMember(ul, "vm_flags", 0), drgn.TypeMember(bitmap, "flags", 0)))
    common = (drgn.TypeMember(ul, "vm_start", 0), drgn.TypeMember(ul, "vm_end", 64))
    new = prog.struct_type("vm_area_struct", 64, common + (
        drgn.TypeMember(flags_union, None, 128), drgn.TypeMember(ul, "vm_pgoff", 256),
        drgn.TypeMember(ptr, "vm_file", 320), drgn.TypeMember(ptr, "vm_ops", 384)))
    old = prog.struct_type("vm_area_struct", 56, common + (
        drgn.TypeMember(ptr, "vm_ops", 128), drgn.TypeMember(ul, "vm_flags", 192),
        drgn.TypeMember(ul, "vm_pgoff", 256), drgn.TypeMember(ptr, "vm_file", 320)))
    values = {"vm_start": 0x7F00_0000_0000, "vm_end": 0x7F00_0020_0000, "vm_pgoff": 0x7F00_0000,
              "vm_file": 0xFFFF_8880_1234_5600, "vm_ops": 0xFFFF_FFFF_8123_4560}
    for vma_type, flags in ((new, {"flags": {"__vma_flags": [0x10000400, 0x3]}}), (old, {"vm_flags": 0x10000400})):
        obj = drgn.Object(prog, vma_type, value={**values, **flags})
        fields = vma_struct_of(vma_type)
        assert fields.size == drgn.sizeof(vma_type)
        assert vma_members(obj.to_bytes_(), fields) == (
            obj.vm_start.value_(), obj.vm_end.value_(), _vma_flags(obj), obj.vm_pgoff.value_(),
            obj.vm_file.value_(), obj.vm_ops.value_())
    assert vma_struct_of(new).flags_words == 2 and vma_struct_of(old).flags_words == 1
