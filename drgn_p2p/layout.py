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
from .arch import arm64, x86_64
from .errors import TargetError
from .records import Arm64Bits, Geometry, Layout, Learned, MapleTree, VmaStruct

#: drgn's architectures that drgn-p2p decodes, by the name the layout records.
_ARCHES = {drgn.Architecture.X86_64: "x86_64", drgn.Architecture.AARCH64: "arm64"}

__all__ = ("read_layout", "vmcoreinfo")


def read_layout(prog: drgn.Program) -> Layout:
    """Learn the :class:`Layout` of the kernel behind *prog*.

    The result is cached in ``prog.cache``.
    """
    try:
        return _current(prog, prog.cache["drgn_p2p_layout"])
    except KeyError:
        pass
    arch = _ARCHES.get(prog.platform.arch) if prog.platform is not None else None
    if arch is None:
        name = prog.platform.arch.name if prog.platform else "unknown"
        raise TargetError(f"architecture {name} is not supported (x86-64 and arm64 only)")
    learned: Dict[str, Learned] = {"arch": Learned(arch, "platform", "drgn Program.platform")}
    info = vmcoreinfo(prog)
    release = _release(prog, info)
    try:
        version = layout_tables.parse_release(release)
    except ValueError:
        version = (0, 0)

    arm64_bits: Optional[Arm64Bits] = None
    if arch == "arm64":
        page_shift, geometry, arm64_bits = _arm64_paging(prog, info, version, learned)
        sme_mask, pfn_mask = 0, geometry.addr_mask
        levels = len(geometry.levels)
    else:
        page_shift = 12
        levels = _paging_levels(prog, info, learned)
        sme_mask, pfn_mask = _pfn_mask(prog, info, learned)
        geometry = x86_64.geometry(levels, pfn_mask)
    learned["geometry"] = Learned(
        f"{levels} levels, {1 << page_shift} B pages, shifts {'/'.join(str(t.shift) for t in geometry.levels)}, "
        f"root {geometry.levels[0].entries} entries", learned["levels"].how, learned["levels"].detail)
    devmap_bit = _devmap_bit(prog, version, arch, learned)
    has_pmd_special, has_pud_special = _pxx_special(prog, arch, learned)
    dax_refcounted = _dax_refcounted(prog, learned)
    max_physmem_bits = _max_physmem_bits(info, levels, arch, learned)
    swap = _swap_types(prog, version, max_physmem_bits - page_shift, learned)
    pte_markers = _pte_markers(version, learned)
    vm_flags = _vm_flags(prog, version, arch, learned)
    memory_types = _memory_types(prog, learned)
    pgmap_in = _pgmap_location(prog, learned)
    zone_device = _zone_device(prog, learned)
    zero_pfn, huge_zero_pfn = _zero_pfns(prog, learned)
    zone_shift, zone_bits, zone_names = _zone_field(prog, learned)
    p2pdma_gate, longterm_file_check, fast_renamed, defio_mapping = _gup_facts(prog, learned)
    highest_memmap_pfn = _highest_memmap_pfn(prog, learned)
    proc_mem_force = _proc_mem_force(prog, learned)
    fast_secretmem = _gup_fast_secretmem_mapping(prog, learned, fast_renamed)
    vma_struct = _vma_struct(prog, learned)
    vma_tree = _vma_tree(prog, learned)

    layout = Layout(
        arch=arch,
        release=release,
        levels=levels,
        page_shift=page_shift,
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
        geometry=geometry,
        zone_shift=zone_shift,
        zone_bits=zone_bits,
        zone_names=zone_names,
        gup_p2pdma_gate=p2pdma_gate,
        gup_longterm_file_check=longterm_file_check,
        gup_fast_renamed=fast_renamed,
        fb_defio_page_mapping=defio_mapping,
        proc_mem_force=proc_mem_force,
        gup_fast_secretmem_mapping=fast_secretmem,
        highest_memmap_pfn=highest_memmap_pfn,
        arm64=arm64_bits,
        vma_struct=vma_struct,
        vma_tree=vma_tree,
        learned=learned,
    )
    prog.cache["drgn_p2p_layout"] = layout
    return layout


def _current(prog: drgn.Program, layout: Layout) -> Layout:
    """*layout* with the facts that change while the kernel runs read again.

    The huge zero folio is allocated on first use and freed by its shrinker
    when unused, then allocated anew: ``huge_zero_pfn`` moves; memory
    hotplug and memremap_pages() raise ``highest_memmap_pfn``. Everything
    else in a layout is fixed at boot. A long-lived session (the library,
    repeated audits of a live or QMP target) must not judge with a stale one.
    """
    learned: Dict[str, Learned] = {}
    _, huge_zero_pfn = _zero_pfns(prog, learned)
    highest_memmap_pfn = _highest_memmap_pfn(prog, learned)
    if huge_zero_pfn == layout.huge_zero_pfn and highest_memmap_pfn == layout.highest_memmap_pfn:
        return layout
    layout = dataclasses.replace(
        layout, huge_zero_pfn=huge_zero_pfn, highest_memmap_pfn=highest_memmap_pfn,
        learned={**layout.learned, **learned},
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


def _vmcoreinfo_number(info: Mapping[str, str], key: str, base: int = 10) -> Optional[int]:
    value = info.get(key)
    if value is None:
        return None
    try:
        return int(value, base)
    except ValueError:
        return None


def _arm64_paging(
    prog: drgn.Program, info: Mapping[str, str], version: Tuple[int, int], learned: Dict[str, Learned]
) -> Tuple[int, Geometry, Arm64Bits]:
    """Granule, levels, LPA2 and descriptor bits of an arm64 kernel (arm64-facts §2, §3).

    ``PAGESIZE`` and ``NUMBER(TCR_EL1_T1SZ)`` are in the vmcoreinfo of every
    arm64 kernel (6.1.176:arch/arm64/kernel/crash_core.c:21-38;
    7.2.13:arch/arm64/kernel/vmcore_info.c:22-38). The user tables are as
    deep as ``vabits_actual`` = 64 - T1SZ (TTBR0 uses T0SZ = 64 -
    vabits_actual): a 52-bit kernel on a CPU without LPA2 runs with 48 (4K)
    or 47 (16K) bits and one level fewer. LPA2 (TCR_EL1.DS) is on exactly when
    a 4K/16K kernel runs with 52-bit VA (7.2.13:arch/arm64/mm/proc.S, the
    ``ARM64_HAS_VA52`` switch), which is drgn's rule too.
    """
    page_size = _vmcoreinfo_number(info, "PAGESIZE")
    if page_size in (1 << 12, 1 << 14, 1 << 16):
        page_shift = page_size.bit_length() - 1
        learned["page_shift"] = Learned(page_shift, "vmcoreinfo", "PAGESIZE")
    else:
        try:
            page_shift = prog["PAGE_SHIFT"].value_()
        except (KeyError, LookupError):
            raise TargetError("cannot learn the arm64 page size: no PAGESIZE in vmcoreinfo") from None
        learned["page_shift"] = Learned(page_shift, "variable", "drgn PAGE_SHIFT")
    va_bits = _vmcoreinfo_number(info, "NUMBER(VA_BITS)")
    t1sz = _vmcoreinfo_number(info, "NUMBER(TCR_EL1_T1SZ)", 16)
    if t1sz:
        vabits_actual = 64 - t1sz
        learned["va_bits"] = Learned(vabits_actual, "vmcoreinfo",
                                     f"64 - NUMBER(TCR_EL1_T1SZ) {t1sz:#x} (config VA_BITS {va_bits})")
    elif va_bits:
        vabits_actual = va_bits
        learned["va_bits"] = Learned(va_bits, "vmcoreinfo", "NUMBER(VA_BITS)")
    else:
        raise TargetError("cannot learn the arm64 VA size: no NUMBER(TCR_EL1_T1SZ) or NUMBER(VA_BITS) in vmcoreinfo")
    lpa2 = page_shift != 16 and vabits_actual == 52
    learned["lpa2"] = Learned(lpa2, "vmcoreinfo", "4K/16K pages with 52-bit vabits_actual (TCR_EL1.DS)")
    physmem = _vmcoreinfo_number(info, "NUMBER(MAX_PHYSMEM_BITS)")
    pa52_64k = page_shift == 16 and physmem == 52
    addr_top = layout_tables.arm64_addr_top(version)
    geometry = arm64.geometry(page_shift, vabits_actual, lpa2, pa52_64k, addr_top)
    learned["pfn_mask"] = Learned(geometry.addr_mask, "version table", f"PTE_ADDR_LOW below bit {addr_top} (50 from v6.9)")
    learned["levels"] = Learned(len(geometry.levels), "vmcoreinfo",
                                f"ARM64_HW_PGTABLE_LEVELS({vabits_actual}) with {1 << page_shift} B pages")
    # arm64 selects HAVE_ARCH_USERFAULTFD_WP if USERFAULTFD (v6.10); fs/userfaultfd.c defines handle_userfault().
    uffd = _symbol_exists(prog, "handle_userfault")
    bits = layout_tables.arm64_bits(version, lpa2=lpa2, uffd_wp=uffd, mair=arm64.MAIR_TYPES)
    learned["arm64"] = Learned(
        f"present-invalid bit {bits.present_invalid_bit}, PROT_NONE bit {bits.prot_none_bit}, "
        f"swap type/offset shift {bits.swp_type_shift}/{bits.swp_offset_shift}, uffd-wp bit {bits.uffd_wp_bit}",
        "version table", "v6.10 PTE_PRESENT_INVALID series; handle_userfault (CONFIG_USERFAULTFD)")
    learned["mair"] = Learned(bits.mair[:5], "version table", "MT_* AttrIndx slots (same 6.1-7.2)")
    return page_shift, geometry, bits


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
    prog: drgn.Program, version: Tuple[int, int], arch: str, learned: Dict[str, Learned]
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
    # took bit 58 for _PAGE_SAVED_DIRTY (v6.6); arm64's PTE_DEVMAP is 57
    # (73b20c84d42d, v5.3). The bit is a macro, so the position comes from
    # the version table.
    bit = layout_tables.devmap_bit(version, arch)
    learned["devmap_bit"] = Learned(bit, "version table", "pfn_t present; _PAGE_BIT_DEVMAP by release")
    return bit


def _pxx_special(prog: drgn.Program, arch: str, learned: Dict[str, Learned]) -> Tuple[bool, bool]:
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
    if arch == "arm64":
        # 3e509c9b03f9 "mm/arm64: support large pfn mappings" (v6.12): arm64
        # selects ARCH_SUPPORTS_HUGE_PFNMAP (PMD) but never ARCH_SUPPORTS_PUD_PFNMAP
        # (no HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD): pud_special() is always false.
        learned["has_pud_special"] = Learned(False, "version table", "arm64 never selects ARCH_SUPPORTS_PUD_PFNMAP")
        return has, False
    learned["has_pud_special"] = Learned(has, "symbol", detail)
    return has, has


def _dax_refcounted(prog: drgn.Program, learned: Dict[str, Learned]) -> bool:
    # Commit 7851bf649d42 ("fs/dax: Fix ZONE_DEVICE page reference counts")
    # (in v6.15) inserts DAX pages as refcounted folios with
    # vmf_insert_page_mkwrite()/vmf_insert_folio_pmd().
    has = _symbol_exists(prog, "vmf_insert_page_mkwrite")
    learned["dax_refcounted"] = Learned(has, "symbol", "vmf_insert_page_mkwrite (v6.15)")
    return has


def _max_physmem_bits(info: Mapping[str, str], levels: int, arch: str, learned: Dict[str, Learned]) -> int:
    value = info.get("NUMBER(MAX_PHYSMEM_BITS)")
    if value is not None:
        bits = int(value)
        learned["max_physmem_bits"] = Learned(bits, "vmcoreinfo", "NUMBER(MAX_PHYSMEM_BITS)")
    elif arch == "arm64":
        bits = 48  # CONFIG_ARM64_PA_BITS of every Debian arm64 kernel without LPA2 in use
        learned["max_physmem_bits"] = Learned(bits, "version table", "MAX_PHYSMEM_BITS 48 without LPA2")
    else:
        bits = 52 if levels == 5 else 46  # arch/x86/include/asm/sparsemem.h
        learned["max_physmem_bits"] = Learned(bits, "version table", "MAX_PHYSMEM_BITS by paging levels")
    return bits


def _swap_types(prog: drgn.Program, version: Tuple[int, int], pfn_bits: int, learned: Dict[str, Learned]):
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
        pfn_bits=pfn_bits,
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


def _vm_flags(prog: drgn.Program, version: Tuple[int, int], arch: str,
              learned: Dict[str, Learned]) -> Mapping[str, int]:
    # Since "mm: declare VMA flags by bit" (v6.19), the flags are an
    # anonymous enum of VMA_*_BIT in the debug info.
    try:
        enumerators = prog["VMA_READ_BIT"].type_.enumerators
    except (KeyError, LookupError):
        enumerators = None
    if enumerators:
        flags = layout_tables.vma_bits_from_enum(enumerators, arch)
        learned["vm_flags"] = Learned(len(flags), "enum", "VMA_*_BIT")
        return flags
    flags = layout_tables.vm_flag_bits(version, arch)
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


def _highest_memmap_pfn(prog: drgn.Program, learned: Dict[str, Learned]) -> Optional[int]:
    # mm/memory.c; raised by memmap_init_range() for boot memory, hotplug and
    # memremap_pages() (ZONE_DEVICE) alike.
    try:
        value = prog["highest_memmap_pfn"].value_()
    except (KeyError, LookupError, drgn.FaultError):
        learned["highest_memmap_pfn"] = Learned(None, "variable", "no highest_memmap_pfn")
        return None
    learned["highest_memmap_pfn"] = Learned(value, "variable", "highest_memmap_pfn")
    return value


def _gup_facts(prog: drgn.Program, learned: Dict[str, Learned]) -> Tuple[bool, bool, bool, bool]:
    """What GUP checks, for :mod:`drgn_p2p.gup`."""
    # 4293399dc6ed ("mm: introduce FOLL_PCI_P2PDMA to gate getting PCI P2PDMA
    # pages", v6.2). The gate is is_pci_p2pdma_page()/folio_is_pci_p2pdma(),
    # IS_ENABLED(CONFIG_PCI_P2PDMA) && …: without the option (Debian's 6.12)
    # GUP takes pages of a MEMORY_DEVICE_PCI_P2PDMA pgmap like any other (seen
    # in the lab). p2pmem_alloc_mmap() (7e9c7ef83d78, the same series) lives in
    # drivers/pci/p2pdma.c, built only with the option: it tells both.
    gate = _symbol_exists(prog, "p2pmem_alloc_mmap")
    learned["gup_p2pdma_gate"] = Learned(gate, "symbol", "p2pmem_alloc_mmap (v6.2 and CONFIG_PCI_P2PDMA)")
    # 8ac268436e6d / 7b81ce9 (v6.5) made check_vma_flags() and GUP-fast refuse
    # FOLL_LONGTERM write pins of file mappings needing dirty tracking, through
    # the then new vma_needs_dirty_tracking(); edd478269640 in the same series
    # dropped io_uring's own file-backed VMA check.
    check = _symbol_exists(prog, "vma_needs_dirty_tracking")
    learned["gup_longterm_file_check"] = Learned(check, "symbol", "vma_needs_dirty_tracking (v6.5)")
    # 23babe1934d7 (v6.10) renamed internal_get_user_pages_fast() to
    # gup_fast_fallback() together with every gup_fast_*() function.
    renamed = _symbol_exists(prog, "gup_fast_fallback")
    learned["gup_fast_renamed"] = Learned(renamed, "symbol", "gup_fast_fallback (v6.10 names)")
    # "fb_defio: do not use deprecated page->mapping, index fields" (Lorenzo
    # Stoakes, 2025) made fb_deferred_io write-protect through the then new
    # mapping_wrprotect_range() and stop setting page->mapping (6.12 sets it in
    # fb_deferred_io_fault(); 7.2 does not).
    defio = not _symbol_exists(prog, "mapping_wrprotect_range")
    learned["fb_defio_page_mapping"] = Learned(defio, "symbol", "no mapping_wrprotect_range")
    return gate, check, renamed, defio


def _gup_fast_secretmem_mapping(prog: drgn.Program, learned: Dict[str, Learned], renamed: bool) -> bool:
    """Whether GUP-fast reads ``folio->mapping`` of every order-0 folio (and
    falls back when it is NULL) to rule out secretmem: 65291dcfcf89
    ("mm/secretmem: fix GUP-fast succeeding on secretmem folios", v6.9), with
    CONFIG_SECRETMEM (secretmem_fault). The fix is inline code: the v6.10
    GUP-fast names stand for it (6.9 and its stable backports are missed)."""
    secretmem = _symbol_exists(prog, "secretmem_fault")
    value = secretmem and renamed
    learned["gup_fast_secretmem_mapping"] = Learned(
        value, "symbol", "secretmem_fault and gup_fast_fallback (CONFIG_SECRETMEM, v6.10 names)")
    return value


def _proc_mem_force(prog: drgn.Program, learned: Dict[str, Learned]) -> str:
    """When /proc/PID/mem reads with FOLL_FORCE: the value of fs/proc/base.c's
    ``proc_mem_force_override`` (CONFIG_PROC_MEM_* or ``proc_mem.force_override=``),
    named by its ``enum proc_mem_force`` enumerator; "always" before v6.12."""
    try:
        value = prog["proc_mem_force_override"]
        name = next(n for n, v in value.type_.enumerators if v == value.value_())
    except (LookupError, drgn.FaultError, StopIteration, TypeError):
        learned["proc_mem_force"] = Learned("always", "default", "no proc_mem_force_override (before v6.12)")
        return "always"
    force = name.replace("PROC_MEM_FORCE_", "").lower()
    learned["proc_mem_force"] = Learned(force, "variable", f"proc_mem_force_override = {name}")
    return force


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
