# SPDX-License-Identifier: GPL-2.0-or-later
"""
Layout
------

Learn, from a running or dumped kernel, every fact that the audit needs and
that differs between kernel versions, and record how each was learned.

Facts come from the most reliable source available: an enumerator or member
in the debug info, a symbol, vmcoreinfo, a kernel variable — and only then
from a version table (:mod:`drgn_p2p.layout_tables`), for macros that debug
info does not carry. Downstream stages ask the :class:`~drgn_p2p.records.Layout`,
never a version number.
"""

import dataclasses
import functools
from typing import Dict, Mapping, Optional, Tuple

import drgn

from . import layout_tables
from .errors import TargetError
from .records import Layout, Learned, MapleTree, VmaStruct

__all__ = ("read_layout", "vmcoreinfo")


def read_layout(prog: drgn.Program) -> Layout:
    """Learn the :class:`Layout` of the kernel behind *prog*.

    The result is cached in ``prog.cache``.
    """
    try:
        return _current(prog, prog.cache["drgn_p2p_layout"])
    except KeyError:
        pass
    if prog.platform is None or prog.platform.arch != drgn.Architecture.X86_64:
        arch = prog.platform.arch.name if prog.platform else "unknown"
        raise TargetError(f"architecture {arch} is not supported yet (x86-64 only)")
    learned: Dict[str, Learned] = {}
    info = vmcoreinfo(prog)
    release = _release(prog, info)
    try:
        version = layout_tables.parse_release(release)
    except ValueError:
        version = (0, 0)

    levels = _paging_levels(prog, info, learned)
    sme_mask, pfn_mask = _pfn_mask(prog, info, learned)
    devmap_bit = _devmap_bit(prog, version, learned)
    has_pmd_special, has_pud_special = _pxx_special(prog, learned)
    dax_refcounted = _dax_refcounted(prog, learned)
    max_physmem_bits = _max_physmem_bits(info, levels, learned)
    swap = _swap_types(prog, version, max_physmem_bits, learned)
    pte_markers = _pte_markers(version, learned)
    vm_flags = _vm_flags(prog, version, learned)
    memory_types = _memory_types(prog, learned)
    pgmap_in = _pgmap_location(prog, learned)
    zone_device = _zone_device(prog, learned)
    zero_pfn, huge_zero_pfn = _zero_pfns(prog, learned)
    zone_shift, zone_bits, zone_names = _zone_field(prog, learned)
    vma_struct = _vma_struct(prog, learned)
    vma_tree = _vma_tree(prog, learned)

    layout = Layout(
        arch="x86_64",
        release=release,
        levels=levels,
        page_shift=12,
        pfn_mask=pfn_mask,
        sme_mask=sme_mask,
        devmap_bit=devmap_bit,
        has_pmd_special=has_pmd_special,
        has_pud_special=has_pud_special,
        dax_refcounted=dax_refcounted,
        swap=swap,
        pte_markers=pte_markers,
        vm_flags=vm_flags,
        memory_types=memory_types,
        pgmap_in=pgmap_in,
        zone_device=zone_device,
        zero_pfn=zero_pfn,
        huge_zero_pfn=huge_zero_pfn,
        zone_shift=zone_shift,
        zone_bits=zone_bits,
        zone_names=zone_names,
        vma_struct=vma_struct,
        vma_tree=vma_tree,
        learned=learned,
    )
    prog.cache["drgn_p2p_layout"] = layout
    return layout


def _current(prog: drgn.Program, layout: Layout) -> Layout:
    """*layout* with the facts that change while the kernel runs read again.

    The huge zero folio is allocated on first use and freed by its shrinker
    when unused, then allocated anew: ``huge_zero_pfn`` moves. Everything
    else in a layout is fixed at boot. A long-lived session (the library,
    repeated audits of a live or QMP target) must not judge with a stale one.
    """
    learned: Dict[str, Learned] = {}
    _, huge_zero_pfn = _zero_pfns(prog, learned)
    if huge_zero_pfn == layout.huge_zero_pfn:
        return layout
    layout = dataclasses.replace(
        layout, huge_zero_pfn=huge_zero_pfn, learned={**layout.learned, "huge_zero_pfn": learned["huge_zero_pfn"]}
    )
    prog.cache["drgn_p2p_layout"] = layout
    return layout


def vmcoreinfo(prog: drgn.Program) -> Mapping[str, str]:
    """The target's VMCOREINFO note as a dict (``"NUMBER(sme_mask)"`` → ``"0"``).

    Read from the kernel's own ``vmcoreinfo_data`` buffer, so it is the same
    for live, vmcore and QMP targets.
    """
    try:
        return prog.cache["drgn_p2p_vmcoreinfo"]
    except KeyError:
        pass
    result: Dict[str, str] = {}
    try:
        data = prog["vmcoreinfo_data"]
        size = prog["vmcoreinfo_size"].value_()
        text = prog.read(data.value_(), size).decode(errors="replace")
    except (KeyError, LookupError, drgn.FaultError):
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key] = value
    prog.cache["drgn_p2p_vmcoreinfo"] = result
    return result


def _release(prog: drgn.Program, info: Mapping[str, str]) -> str:
    try:
        return prog["init_uts_ns"].name.release.string_().decode()
    except (KeyError, LookupError, drgn.FaultError):
        return info.get("OSRELEASE", "unknown")


def _symbol_exists(prog: drgn.Program, name: str) -> bool:
    try:
        prog.symbol(name)
        return True
    except LookupError:
        pass
    try:
        prog.object(name)
        return True
    except LookupError:
        return False


def _paging_levels(prog: drgn.Program, info: Mapping[str, str], learned: Dict[str, Learned]) -> int:
    value = info.get("NUMBER(pgtable_l5_enabled)")
    if value is not None:
        learned["levels"] = Learned(5 if int(value) else 4, "vmcoreinfo", "NUMBER(pgtable_l5_enabled)")
        return 5 if int(value) else 4
    # Variables of arch/x86/kernel/head64.c; ptrs_per_p4d is 1 when the P4D
    # level is folded at run time (4-level paging on a 5-level kernel).
    try:
        levels = 5 if prog["ptrs_per_p4d"].value_() == 512 else 4
        learned["levels"] = Learned(levels, "variable", "ptrs_per_p4d")
        return levels
    except (KeyError, LookupError):
        learned["levels"] = Learned(4, "version table", "no LA57 support compiled in")
        return 4


def _pfn_mask(
    prog: drgn.Program, info: Mapping[str, str], learned: Dict[str, Learned]
) -> Tuple[int, int]:
    sme_mask = int(info.get("NUMBER(sme_mask)", "0"), 0)
    learned["sme_mask"] = Learned(
        sme_mask, "vmcoreinfo" if "NUMBER(sme_mask)" in info else "version table", "NUMBER(sme_mask)"
    )
    page_mask = ~((1 << 12) - 1) & ((1 << 64) - 1)
    # CONFIG_DYNAMIC_PHYSICAL_MASK (SME, TDX, Hyper-V isolation) narrows the
    # run-time physical_mask; without it __PHYSICAL_MASK is (1 << 52) - 1.
    try:
        physical_mask = prog["physical_mask"].value_()
        how = Learned(0, "variable", "physical_mask")
    except (KeyError, LookupError, drgn.FaultError):
        physical_mask = (1 << 52) - 1
        how = Learned(0, "version table", "__PHYSICAL_MASK_SHIFT = 52")
    pfn_mask = physical_mask & page_mask & ~sme_mask
    learned["pfn_mask"] = Learned(pfn_mask, how.how, how.detail)
    return sme_mask, pfn_mask


def _devmap_bit(
    prog: drgn.Program, version: Tuple[int, int], learned: Dict[str, Learned]
) -> Optional[int]:
    # Commit d438d2734170 ("mm: remove devmap related functions and page
    # table bits") (in v6.17) removed _PAGE_DEVMAP together with pfn_t, whose
    # typedef is in the debug info of every kernel that uses it.
    try:
        prog.type("pfn_t")
    except LookupError:
        learned["devmap_bit"] = Learned(None, "type", "no pfn_t: devmap removed (v6.17)")
        return None
    # _PAGE_DEVMAP moved from SOFTW4 = 58 to 57 when the shadow-stack series
    # took bit 58 for _PAGE_SAVED_DIRTY (v6.6); the bit is a macro, so the
    # position comes from the version table.
    bit = layout_tables.devmap_bit(version)
    learned["devmap_bit"] = Learned(bit, "version table", "pfn_t present; _PAGE_BIT_DEVMAP by release")
    return bit


def _pxx_special(prog: drgn.Program, learned: Dict[str, Learned]) -> Tuple[bool, bool]:
    # Peter Xu's "mm: Support huge pfnmaps" series (v6.12) added
    # pmd_special()/pud_special() together with the follow_pfnmap API, but
    # only under CONFIG_ARCH_SUPPORTS_PMD_PFNMAP/PUD_PFNMAP, which x86-64
    # selects through ARCH_SUPPORTS_HUGE_PFNMAP "if TRANSPARENT_HUGEPAGE"
    # (HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD is always set on x86-64). Without
    # them the generic pmd_special()/pud_special() return false.
    series = _symbol_exists(prog, "follow_pfnmap_start")
    thp = _symbol_exists(prog, "transparent_hugepage_flags")
    has = series and thp
    if not series:
        detail = "no follow_pfnmap_start: before the huge pfnmap series (v6.12)"
    elif not thp:
        detail = "follow_pfnmap_start, but no transparent_hugepage_flags: CONFIG_TRANSPARENT_HUGEPAGE=n"
    else:
        detail = "follow_pfnmap_start (v6.12) and transparent_hugepage_flags (ARCH_SUPPORTS_HUGE_PFNMAP needs THP)"
    learned["has_pmd_special"] = Learned(has, "symbol", detail)
    learned["has_pud_special"] = Learned(has, "symbol", detail)
    return has, has


def _dax_refcounted(prog: drgn.Program, learned: Dict[str, Learned]) -> bool:
    # Commit 7851bf649d42 ("fs/dax: Fix ZONE_DEVICE page reference counts")
    # (in v6.15) inserts DAX pages as refcounted folios with
    # vmf_insert_page_mkwrite()/vmf_insert_folio_pmd().
    has = _symbol_exists(prog, "vmf_insert_page_mkwrite")
    learned["dax_refcounted"] = Learned(has, "symbol", "vmf_insert_page_mkwrite (v6.15)")
    return has


def _max_physmem_bits(info: Mapping[str, str], levels: int, learned: Dict[str, Learned]) -> int:
    value = info.get("NUMBER(MAX_PHYSMEM_BITS)")
    if value is not None:
        bits = int(value)
        learned["max_physmem_bits"] = Learned(bits, "vmcoreinfo", "NUMBER(MAX_PHYSMEM_BITS)")
    else:
        bits = 52 if levels == 5 else 46  # arch/x86/include/asm/sparsemem.h
        learned["max_physmem_bits"] = Learned(bits, "version table", "MAX_PHYSMEM_BITS by paging levels")
    return bits


def _swap_types(prog: drgn.Program, version: Tuple[int, int], max_physmem_bits: int, learned: Dict[str, Learned]):
    try:
        max_swapfiles = prog["swap_info"].type_.length
    except (KeyError, LookupError):
        raise TargetError("cannot find swap_info in the debug info: is this a Linux kernel with CONFIG_SWAP?") from None
    # make_device_exclusive_range() (two exclusive types) became
    # make_device_exclusive() with a single SWP_DEVICE_EXCLUSIVE in v6.15
    # ("mm: use single SWP_DEVICE_EXCLUSIVE entry type"); both exist only
    # with CONFIG_DEVICE_PRIVATE, which is what adds the device swap types.
    if _symbol_exists(prog, "make_device_exclusive"):
        device_private, single_exclusive = True, True
        device_how = "make_device_exclusive (single type, v6.15)"
    elif _symbol_exists(prog, "make_device_exclusive_range"):
        device_private, single_exclusive = True, False
        device_how = "make_device_exclusive_range (two types)"
    else:
        device_private, single_exclusive = False, False
        device_how = "no make_device_exclusive*: CONFIG_DEVICE_PRIVATE=n"
    # The migration types exist with CONFIG_MIGRATION (mm/migrate.c, which
    # defines migration_entry_wait()), the hwpoison type with
    # CONFIG_MEMORY_FAILURE (mm/memory-failure.c, memory_failure()).
    migration = _symbol_exists(prog, "migration_entry_wait")
    hwpoison = _symbol_exists(prog, "memory_failure")
    # SWP_SWAPIN_ERROR is a macro: only the release tells (v6.1 only).
    swapin_error = layout_tables.has_swapin_error(version)
    has_marker, has_swapin_error, note = layout_tables.special_swap_counts(
        max_swapfiles=max_swapfiles,
        device_num=(3 if single_exclusive else 4) if device_private else 0,
        migration=migration,
        hwpoison=hwpoison,
        swapin_error=swapin_error,
    )
    swap = layout_tables.swap_types(
        device_private=device_private,
        single_device_exclusive=single_exclusive,
        has_swapin_error=has_swapin_error,
        has_pte_marker=has_marker,
        migration=migration,
        hwpoison=hwpoison,
        pfn_bits=max_physmem_bits - 12,
    )
    learned["swap.max_swapfiles"] = Learned(max_swapfiles, "type", "length of swap_info[]")
    learned["swap.device_private"] = Learned(device_private, "symbol", device_how)
    learned["swap.migration"] = Learned(migration, "symbol", "migration_entry_wait (CONFIG_MIGRATION)")
    learned["swap.hwpoison"] = Learned(hwpoison, "symbol", "memory_failure (CONFIG_MEMORY_FAILURE)")
    learned["swap.swapin_error"] = Learned(has_swapin_error, "version table", "SWP_SWAPIN_ERROR before v6.2")
    learned["swap.pte_marker"] = Learned(has_marker, "type", note)
    return swap


def _pte_markers(version: Tuple[int, int], learned: Dict[str, Learned]) -> Mapping[str, int]:
    markers = layout_tables.pte_markers(version)
    learned["pte_markers"] = Learned(dict(markers), "version table", "PTE_MARKER_* bits")
    return markers


def _vm_flags(prog: drgn.Program, version: Tuple[int, int], learned: Dict[str, Learned]) -> Mapping[str, int]:
    # Since "mm: declare VMA flags by bit" (v6.19), the flags are an
    # anonymous enum of VMA_*_BIT in the debug info.
    try:
        enumerators = prog["VMA_READ_BIT"].type_.enumerators
    except (KeyError, LookupError):
        enumerators = None
    if enumerators:
        flags = layout_tables.vma_bits_from_enum(enumerators)
        learned["vm_flags"] = Learned(len(flags), "enum", "VMA_*_BIT")
        return flags
    flags = layout_tables.vm_flag_bits(version)
    learned["vm_flags"] = Learned(len(flags), "version table", "VM_* macros (include/linux/mm.h)")
    return flags


def _memory_types(prog: drgn.Program, learned: Dict[str, Learned]) -> Mapping[str, int]:
    try:
        enumerators = prog.type("enum memory_type").enumerators
    except LookupError:
        learned["memory_types"] = Learned({}, "type", "no enum memory_type: CONFIG_ZONE_DEVICE=n")
        return {}
    types = {
        name[len("MEMORY_DEVICE_") :]: value
        for name, value in enumerators or ()
        if name.startswith("MEMORY_DEVICE_")
    }
    learned["memory_types"] = Learned(dict(types), "enum", "enum memory_type")
    return types


def _pgmap_location(prog: drgn.Program, learned: Dict[str, Learned]) -> str:
    # The pgmap pointer moved from struct page to struct folio with the
    # compound ZONE_DEVICE work ("mm: move pgmap to folio", v6.15).
    try:
        prog.type("struct folio").member("pgmap")
        learned["pgmap_in"] = Learned("folio", "member", "struct folio::pgmap")
        return "folio"
    except LookupError:
        learned["pgmap_in"] = Learned("page", "member", "struct page::pgmap")
        return "page"


def _zone_device(prog: drgn.Program, learned: Dict[str, Learned]) -> Optional[int]:
    try:
        value = prog["ZONE_DEVICE"].value_()
    except (KeyError, LookupError):
        learned["zone_device"] = Learned(None, "enum", "no ZONE_DEVICE in enum zone_type")
        return None
    learned["zone_device"] = Learned(value, "enum", "enum zone_type::ZONE_DEVICE")
    return value


def _zero_pfns(prog: drgn.Program, learned: Dict[str, Learned]) -> Tuple[int, Optional[int]]:
    # The zero page's PFN is the variable zero_pfn up to v6.x; 7.x renamed it
    # zero_page_pfn and made zero_pfn() a function.
    zero_pfn = None
    for name in ("zero_page_pfn", "zero_pfn"):
        try:
            obj = prog[name]
        except (KeyError, LookupError):
            continue
        if obj.type_.kind == drgn.TypeKind.FUNCTION:
            continue
        zero_pfn = obj.value_()
        learned["zero_pfn"] = Learned(zero_pfn, "variable", name)
        break
    if zero_pfn is None:
        raise TargetError("cannot find the zero page's PFN (zero_page_pfn/zero_pfn)")
    huge_zero_pfn: Optional[int] = None
    try:
        value = prog["huge_zero_pfn"].value_()
        # ~0UL until the huge zero folio is first allocated.
        huge_zero_pfn = None if value == (1 << 64) - 1 else value
        learned["huge_zero_pfn"] = Learned(huge_zero_pfn, "variable", "huge_zero_pfn")
    except (KeyError, LookupError, drgn.FaultError):
        learned["huge_zero_pfn"] = Learned(None, "variable", "no huge_zero_pfn")
    return zero_pfn, huge_zero_pfn


def _vma_struct(prog: drgn.Program, learned: Dict[str, Learned]) -> Optional[VmaStruct]:
    """Offsets of the ``struct vm_area_struct`` members the audit reads.

    The flags: ``vm_flags`` became a const member of a union with
    ``__vm_flags`` in v6.3 (bc292ab00f6c, "mm: introduce vma->vm_flags
    wrapper functions"), which the same offset serves; 7.x puts it in a union
    with ``vma_flags_t flags``, a bitmap of NUM_VMA_FLAG_BITS, taken whole
    where that member exists. ``None`` when the type lacks a member (the VMAs
    are then read member by member, as drgn objects).
    """
    try:
        fields = vma_struct_of(prog.type("struct vm_area_struct"))
    except (LookupError, ValueError, TypeError) as e:
        learned["vma_struct"] = Learned(None, "type", f"struct vm_area_struct: {e}")
        return None
    learned["vma_struct"] = Learned(fields, "type", f"struct vm_area_struct (flags: {fields.flags_words} word(s))")
    return fields


def _vma_tree(prog: drgn.Program, learned: Dict[str, Learned]) -> Optional[MapleTree]:
    """Offsets of an mm's maple tree of VMAs (v6.1+, 763ecb035029, "mm: remove
    the vma linked list"); ``None`` before it (or without the types)."""
    try:
        fields = maple_tree_of(prog.type("struct mm_struct"), prog.type("struct maple_node"))
    except (LookupError, ValueError, TypeError) as e:
        learned["vma_tree"] = Learned(None, "member", f"mm_struct.mm_mt / struct maple_node: {e}")
        return None
    learned["vma_tree"] = Learned(fields, "member", "mm_struct.mm_mt.ma_root, struct maple_node mr64/ma64")
    return fields


def maple_tree_of(mm: drgn.Type, node: drgn.Type) -> MapleTree:
    """The :class:`MapleTree` of ``struct mm_struct`` *mm* and ``struct maple_node`` *node*.

    :raises LookupError: without ``mm_mt`` (before v6.1) or a node member the walk reads.
    """

    def kind(name: str) -> Tuple[int, int, int, int, int]:
        member = node.member(name).type
        return (drgn.offsetof(node, f"{name}.pivot"), member.member("pivot").type.length,
                drgn.offsetof(node, f"{name}.slot"), member.member("slot").type.length,
                drgn.offsetof(node, f"{name}.meta.end"))

    return MapleTree(root=drgn.offsetof(mm, "mm_mt.ma_root"), node_size=drgn.sizeof(node),
                     range64=kind("mr64"), arange64=kind("ma64"))


def vma_struct_of(vma: drgn.Type) -> VmaStruct:
    """The :class:`VmaStruct` of ``struct vm_area_struct`` type *vma* (64-bit).

    :raises LookupError: if it lacks a member the audit reads.
    """
    offset = functools.partial(drgn.offsetof, vma)
    words = 1
    flags = offset("vm_flags")
    if vma.has_member("flags"):
        size = drgn.sizeof(vma.member("flags").type)
        if size % 8 == 0 and offset("flags") == flags:
            words = size // 8
    return VmaStruct(size=drgn.sizeof(vma), start=offset("vm_start"), end=offset("vm_end"),
                     pgoff=offset("vm_pgoff"), file=offset("vm_file"), ops=offset("vm_ops"),
                     flags=flags, flags_words=words)


def _zone_field(
    prog: drgn.Program, learned: Dict[str, Learned]
) -> Tuple[Optional[int], int, Mapping[int, str]]:
    """Where ``page_zonenum()`` finds the zone in ``page->flags``.

    include/linux/page-flags-layout.h packs | SECTION | NODE | ZONE | ... from
    bit 63 down. The widths are macros, but their sources are array lengths
    in the debug info: ``ZONES_SHIFT`` = order_base_2(MAX_NR_ZONES), the
    length of ``pglist_data::node_zones``; ``NODES_SHIFT`` = log2 of the
    length of ``node_data[MAX_NUMNODES]``; SECTIONS_WIDTH is 0 with
    SPARSEMEM_VMEMMAP (``vmemmap`` exists). The result is then checked
    against the first page of every populated zone.
    """
    from drgn.helpers.linux.mm import page_flags, pfn_to_page
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    try:
        names = {value: name for name, value in prog.type("enum zone_type").enumerators or ()}
        max_nr_zones = prog.type("struct pglist_data").member("node_zones").type.length
        nodes = prog["node_data"].type_.length if _symbol_exists(prog, "node_data") else 1
        prog["vmemmap"]
    except (KeyError, LookupError):
        learned["zone_shift"] = Learned(None, "type", "no vmemmap/node_zones: zone not decoded")
        return None, 0, {}
    zone_bits = max(1, (max_nr_zones - 1).bit_length())
    nodes_bits = (nodes - 1).bit_length()
    shift = 64 - nodes_bits - zone_bits
    checked = 0
    try:
        for pgdat in for_each_online_pgdat(prog):
            for index, zone in enumerate(pgdat.node_zones):
                if not zone.present_pages.value_():
                    continue
                flags = page_flags(pfn_to_page(prog, zone.zone_start_pfn.value_())).value_()
                if (flags >> shift) & ((1 << zone_bits) - 1) != index:
                    learned["zone_shift"] = Learned(None, "type", f"ZONES_PGSHIFT {shift} disagrees with {names.get(index)}")
                    return None, 0, {}
                checked += 1
    except drgn.FaultError:
        pass
    learned["zone_shift"] = Learned(
        shift, "type", f"64 - log2(len(node_data)) {nodes_bits} - order(MAX_NR_ZONES {max_nr_zones}); checked on {checked} zones"
    )
    return shift, zone_bits, names
