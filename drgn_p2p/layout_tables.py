# SPDX-License-Identifier: GPL-2.0-or-later
"""
Version tables
--------------

Fallback facts for the ``layout`` stage, used only when the debug info of the
target does not carry a fact (most of these are macros, which DWARF/BTF do not
keep). Each compat branch names the kernel change and release it follows;
``[inferred]``/``[UNVERIFIED]`` repeat the confidence given in
``reference/kernel-facts.md`` (no kernel git history was available there).

Nothing here reads a kernel. Versions are ``(major, minor)`` tuples; the
``layout`` stage is the only caller and records every value taken from here as
``Learned(how="version table")``.
"""

import re
from typing import Dict, Mapping, Optional, Tuple

from .records import SwapTypes

__all__ = (
    "Version",
    "parse_release",
    "vm_flag_bits",
    "vma_bits_from_enum",
    "swap_types",
    "special_swap_counts",
    "MAX_SWAPFILES_SHIFT",
    "devmap_bit",
    "has_pmd_pud_special",
    "dax_refcounted",
    "single_device_exclusive",
    "has_swapin_error",
    "pte_markers",
    "arm64_bits",
    "arm64_addr_top",
)

Version = Tuple[int, int]


def parse_release(release: str) -> Version:
    """``"6.12.107+deb13-amd64"`` → ``(6, 12)``; raises ValueError if there is no ``N.M`` prefix."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(m.group(1)), int(m.group(2))


# ---------------------------------------------------------------------------
# VMA flags (include/linux/mm.h VM_* macros; VMA_*_BIT enum from 6.19/7.0)
# ---------------------------------------------------------------------------

#: Bits whose number has not changed from v6.1 to v7.2 (kernel-facts §3.1;
#: 6.1.4:include/linux/mm.h:264-410, 7.2.8:include/linux/mm.h:289-395).
_VM_FLAGS_GENERIC: Mapping[str, int] = {
    "READ": 0,
    "WRITE": 1,
    "EXEC": 2,
    "SHARED": 3,
    "MAYREAD": 4,
    "MAYWRITE": 5,
    "MAYEXEC": 6,
    "MAYSHARE": 7,
    "GROWSDOWN": 8,
    "UFFD_MISSING": 9,
    "PFNMAP": 10,
    "UFFD_WP": 12,
    "LOCKED": 13,
    "IO": 14,
    "SEQ_READ": 15,
    "RAND_READ": 16,
    "DONTCOPY": 17,
    "DONTEXPAND": 18,
    # VM_LOCKONFAULT (0x80000) exists since v4.4 ("mm: introduce VM_LOCKONFAULT");
    # kernel-facts §3.1 notes only that 6.1's *smaps* table has no "lf" mnemonic.
    "LOCKONFAULT": 19,
    "ACCOUNT": 20,
    "NORESERVE": 21,
    "HUGETLB": 22,
    "SYNC": 23,
    "WIPEONFORK": 25,
    "DONTDUMP": 26,
    "SOFTDIRTY": 27,
    "MIXEDMAP": 28,
    "HUGEPAGE": 29,
    "NOHUGEPAGE": 30,
    "MERGEABLE": 31,
}

#: x86-64 arch bits (VM_ARCH_1 = VM_PAT, VM_HIGH_ARCH_0..3 = protection keys).
_VM_FLAGS_X86: Mapping[str, int] = {
    "PAT": 24,
    "PKEY_BIT0": 32,
    "PKEY_BIT1": 33,
    "PKEY_BIT2": 34,
    "PKEY_BIT3": 35,
}


def vm_flag_bits(version: Version, arch: str = "x86_64") -> Dict[str, int]:
    """VMA flag name (without ``VM_``) → bit number for *version* on *arch*.

    The x86-64 and arm64 arch bits are tabulated; for another *arch* the
    result holds the generic bits only (PFNMAP, IO, MIXEDMAP, … are generic).
    """
    bits = dict(_VM_FLAGS_GENERIC)
    if arch == "arm64":
        # VM_ARM64_BTI = VM_ARCH_1 (6.1.176/6.12.117 include/linux/mm.h:359/382).
        bits["ARM64_BTI"] = 24
        if version >= (6, 12):
            # POE pkeys took VM_HIGH_ARCH_0..2 and VM_MTE moved to HIGH_ARCH_4/5
            # ("arm64: add POIndex defines"/"mm: arm64: ... VM_PKEY_BIT*", v6.12
            # [inferred]; 6.12.117:mm.h:340-390).
            bits.update(PKEY_BIT0=32, PKEY_BIT1=33, PKEY_BIT2=34, MTE=36, MTE_ALLOWED=37)
        else:
            bits.update(MTE=32, MTE_ALLOWED=33)  # VM_HIGH_ARCH_0/1 (6.1.176:mm.h:366-367)
    if arch == "x86_64":
        bits.update(_VM_FLAGS_X86)
        if version >= (6, 6):
            # x86 shadow stack took VM_HIGH_ARCH_5 = 37 ("mm: Introduce
            # VM_SHADOW_STACK for shadow stack memory", v6.6; kernel-facts §3.1 for 6.12).
            bits["SHADOW_STACK"] = 37
    # VM_UFFD_MINOR: 37 since v5.13 ("userfaultfd: add minor fault registration
    # mode"); 38 from v6.6, when x86 shadow stack took 37 (fb47a799cc5c "mm:
    # Move VM_UFFD_MINOR_BIT from 37 to 38"; 6.12.117:mm.h:401 = 38). arm64
    # GCS (v6.13) then defined VM_SHADOW_STACK as VM_HIGH_ARCH_6 = 38 as well,
    # and "mm: fix VM_UFFD_MINOR == VM_SHADOW_STACK on USERFAULTFD=y &&
    # ARM64_GCS=y" moved it to 41 on every architecture, in v6.16 [from the
    # commit's subject and date, not read in a v6.16 tree: no 6.13-6.19 source
    # package is available; the fix was marked for stable, so late 6.15.y may
    # have 41 too]. v6.19+ kernels declare it as VMA_UFFD_MINOR_BIT = 41 in
    # the enum, which the layout stage reads instead of this table.
    if version >= (6, 16):
        bits["UFFD_MINOR"] = 41
    elif version >= (6, 6):
        bits["UFFD_MINOR"] = 38
    else:
        bits["UFFD_MINOR"] = 37
    if version >= (6, 9):
        # "mm: introduce new flag to indicate wc safe" (VM_ALLOW_ANY_UNCACHED),
        # v6.9 [inferred; kernel-facts: present in 6.12.8:mm.h:415, 7.2.8:mm.h:348].
        bits["ALLOW_ANY_UNCACHED"] = 39
    if version >= (6, 11):
        # "mm: add MAP_DROPPABLE for designating always-droppable mappings", v6.11
        # [inferred]; 40 on 64-bit in 6.12 and 7.2.
        bits["DROPPABLE"] = 40
    if version >= (6, 19):
        # VM_SEALED 63 → 42 and the new VM_MAYBE_GUARD (11) are in 7.1.8/7.2.8
        # but not 6.12.8; believed to come with "mm: declare VMA flags by bit"
        # (Lorenzo Stoakes, v6.19 or v7.0) [UNVERIFIED: exact release].
        bits["SEALED"] = 42
        bits["MAYBE_GUARD"] = 11
    elif version >= (6, 10):
        # "mseal: add mseal syscall" introduced VM_SEALED as bit 63, v6.10 [inferred].
        bits["SEALED"] = 63
    return bits


#: The VMA_*_BIT enum (v6.19+) declares every architecture's aliases whatever
#: the architecture built; these are not x86-64's and would mislabel its bits.
_FOREIGN_VMA_BITS = frozenset(
    {"SAO", "GROWSUP", "SPARC_ADI", "ARM64_BTI", "ARCH_CLEAR", "MAPPED_COPY", "MTE",
     "MTE_ALLOWED", "PKEY_BIT4", "STACK"}
)
#: x86-64 names of the generic arch slots (VM_PAT, VM_PKEY_BIT0..3, VM_SHADOW_STACK).
_X86_VMA_SLOTS = {
    "ARCH_1": "PAT",
    "HIGH_ARCH_0": "PKEY_BIT0",
    "HIGH_ARCH_1": "PKEY_BIT1",
    "HIGH_ARCH_2": "PKEY_BIT2",
    "HIGH_ARCH_3": "PKEY_BIT3",
    "HIGH_ARCH_5": "SHADOW_STACK",
}
#: arm64 names of the arch slots (7.2.8:include/linux/mm.h:357-388: BTI, POE
#: pkeys 0-2, MTE, MTE_ALLOWED, GCS shadow stack).
_ARM64_VMA_SLOTS = {
    "ARCH_1": "ARM64_BTI",
    "HIGH_ARCH_0": "PKEY_BIT0",
    "HIGH_ARCH_1": "PKEY_BIT1",
    "HIGH_ARCH_2": "PKEY_BIT2",
    "HIGH_ARCH_4": "MTE",
    "HIGH_ARCH_5": "MTE_ALLOWED",
    "HIGH_ARCH_6": "SHADOW_STACK",
}
_VMA_SLOTS = {"x86_64": _X86_VMA_SLOTS, "arm64": _ARM64_VMA_SLOTS}


def vma_bits_from_enum(enumerators, arch: str = "x86_64") -> Dict[str, int]:
    """VMA flag name → bit from the ``VMA_*_BIT`` enumerators of a kernel of *arch*.

    The enum declares every architecture's aliases whatever the architecture
    built: this keeps the generic names, drops the aliases, and names the
    arch slots (``ARCH_1``, ``HIGH_ARCH_n``) the way *arch* uses them, so
    that each bit has the one name *arch* gives it.
    """
    slots = _VMA_SLOTS.get(arch, {})
    bits = [(name[len("VMA_") : -len("_BIT")], value) for name, value in enumerators
            if name.startswith("VMA_") and name.endswith("_BIT")]
    # The slot each arch bit is: an alias of a slot *arch* leaves unnamed (arm64's PKEY_BIT3) goes too.
    slot_of = {value: name for name, value in bits if name.startswith("HIGH_ARCH_") or name == "ARCH_1"}
    flags: Dict[str, int] = {}
    for name, value in bits:
        if name in _FOREIGN_VMA_BITS or name in slots.values():
            continue
        if value in slot_of and slot_of[value] not in slots:
            continue
        flags[slots.get(name, name)] = value
    return flags


# ---------------------------------------------------------------------------
# Swap-entry types (include/linux/swap.h)
# ---------------------------------------------------------------------------

#: ``MAX_SWAPFILES_SHIFT``: 5 bits of type, special types allocated downward from 32.
MAX_SWAPFILES_SHIFT = 5

_MIGRATION_NUM = 3  # READ, READ_EXCLUSIVE, WRITE (since v5.19)
_HWPOISON_NUM = 1


def swap_types(
    *,
    device_private: bool,
    single_device_exclusive: bool,
    has_swapin_error: bool,
    has_pte_marker: bool,
    pfn_bits: int,
    migration: bool = True,
    hwpoison: bool = True,
    max_swapfiles: Optional[int] = None,
) -> SwapTypes:
    """The special swap types of one kernel configuration (kernel-facts §2.2).

    Implements ``include/linux/swap.h``: ``MAX_SWAPFILES = (1 << MAX_SWAPFILES_SHIFT)
    - SWP_DEVICE_NUM - SWP_MIGRATION_NUM - SWP_HWPOISON_NUM - SWP_PTE_MARKER_NUM
    [- SWP_SWAPIN_ERROR_NUM]`` and the types stacked above it in the order
    HWPOISON, MIGRATION_{READ,READ_EXCLUSIVE,WRITE}, DEVICE_{WRITE,READ},
    DEVICE_EXCLUSIVE…, PTE_MARKER, SWAPIN_ERROR.

    *device_private*: ``CONFIG_DEVICE_PRIVATE`` (guards the device-private and
    device-exclusive types). *single_device_exclusive*: one
    ``SWP_DEVICE_EXCLUSIVE`` type (v6.15+) instead of ``_WRITE``/``_READ``.
    *has_swapin_error*: ``SWP_SWAPIN_ERROR`` exists (v6.1). *has_pte_marker*:
    ``SWP_PTE_MARKER`` exists (``CONFIG_PTE_MARKER`` on 6.1; unconditional on
    6.12+). *migration*/*hwpoison*: ``CONFIG_MIGRATION``/``CONFIG_MEMORY_FAILURE``.
    *pfn_bits*: ``SWP_PFN_BITS`` = ``MAX_PHYSMEM_BITS - PAGE_SHIFT``.

    *max_swapfiles*, when learned (``swap_info``'s array length), is checked
    against the formula: a mismatch raises :class:`ValueError`, which tells the
    caller that its configuration guess is wrong.
    """
    # ≤v6.14: SWP_DEVICE_NUM 4 (WRITE, READ, EXCLUSIVE_WRITE, EXCLUSIVE_READ);
    # v6.15+: 3 ("mm: use single SWP_DEVICE_EXCLUSIVE entry type", David
    # Hildenbrand, v6.15 [inferred]; 6.12.8:swap.h:83-84 vs 7.2.8:swap.h:80).
    device_num = (3 if single_device_exclusive else 4) if device_private else 0
    migration_num = _MIGRATION_NUM if migration else 0
    hwpoison_num = _HWPOISON_NUM if hwpoison else 0
    # 6.1: SWP_PTE_MARKER_NUM is 1 only with CONFIG_PTE_MARKER (6.1.4:swap.h:67-73);
    # 6.12+: unconditional (6.12.8:swap.h:63-65).
    marker_num = 1 if has_pte_marker else 0
    # 6.1: SWP_SWAPIN_ERROR_NUM 1, unconditional (6.1.4:swap.h:58-61); replaced
    # by a PTE marker later ("mm: use pte markers for swap errors", v6.2 from
    # memory [kernel-facts: UNVERIFIED, between 6.2 and 6.12]).
    swapin_error_num = 1 if has_swapin_error else 0

    computed = (1 << MAX_SWAPFILES_SHIFT) - (
        device_num + migration_num + hwpoison_num + marker_num + swapin_error_num
    )
    if max_swapfiles is not None and max_swapfiles != computed:
        raise ValueError(
            f"MAX_SWAPFILES is {max_swapfiles} but this configuration gives {computed}"
        )
    base = computed

    def take(present: bool, n: int) -> Optional[int]:
        nonlocal base
        if not present:
            return None
        first = base
        base += n
        return first

    hwp = take(hwpoison, hwpoison_num)
    mig = take(migration, migration_num)
    dev = take(device_private, device_num)
    marker = take(has_pte_marker, marker_num)
    swapin = take(has_swapin_error, swapin_error_num)
    assert base == 1 << MAX_SWAPFILES_SHIFT

    if dev is None:
        dev_w = dev_r = dex_w = dex_r = None
    else:
        dev_w, dev_r = dev, dev + 1
        dex_w = dev + 2
        dex_r = dex_w if single_device_exclusive else dev + 3
    return SwapTypes(
        max_swapfiles=computed,
        hwpoison=hwp,
        migration_read=None if mig is None else mig,
        migration_read_exclusive=None if mig is None else mig + 1,
        migration_write=None if mig is None else mig + 2,
        device_write=dev_w,
        device_read=dev_r,
        device_exclusive_write=dex_w,
        device_exclusive_read=dex_r,
        pte_marker=marker,
        swapin_error=swapin,
        pfn_bits=pfn_bits,
    )


def special_swap_counts(
    *, max_swapfiles: int, device_num: int, migration: bool, hwpoison: bool, swapin_error: bool
) -> Tuple[bool, bool, str]:
    """Which of ``SWP_PTE_MARKER`` and ``SWP_SWAPIN_ERROR`` a kernel has, from
    the one number that debug info keeps (``MAX_SWAPFILES``, the length of
    ``swap_info[]``) and the types learned otherwise.

    ``32 - MAX_SWAPFILES`` is the number of special types; what the device
    (*device_num*), migration and hwpoison types leave is
    ``SWP_PTE_MARKER_NUM + SWP_SWAPIN_ERROR_NUM``. *swapin_error* says whether
    the kernel defines ``SWP_SWAPIN_ERROR`` (v6.1: always, whatever
    CONFIG_PTE_MARKER says; gone with "mm: use pte markers for swap errors",
    v6.2). Returns ``(has_pte_marker, has_swapin_error, note)``; never raises:
    a count no configuration explains keeps the marker (every kernel since
    v6.12 has one) and says so in *note*.
    """
    rest = (1 << MAX_SWAPFILES_SHIFT) - max_swapfiles - device_num
    rest -= (_MIGRATION_NUM if migration else 0) + (_HWPOISON_NUM if hwpoison else 0)
    marker = rest - (1 if swapin_error else 0)
    note = f"32 - MAX_SWAPFILES {max_swapfiles} - device/migration/hwpoison types = {rest}"
    if marker in (0, 1):
        return bool(marker), swapin_error, note
    return True, False, note + " (no known configuration gives this; PTE markers assumed)"


# ---------------------------------------------------------------------------
# Single facts by version (fallbacks for the layout stage)
# ---------------------------------------------------------------------------


def devmap_bit(version: Version, arch: str = "x86_64") -> Optional[int]:
    """``_PAGE_BIT_DEVMAP`` (x86) / ``PTE_DEVMAP`` (arm64), ``None`` once removed."""
    if version >= (6, 17):
        # d438d2734170 "mm: remove devmap related functions and page table bits",
        # v6.17 [inferred, high confidence].
        return None
    if arch == "arm64":
        return 57  # PTE_DEVMAP (6.1.4/6.12.8 arm64 pgtable-prot.h:20)
    # x86: 58 in 6.1 (6.1.4:pgtable_types.h:24); 57 once _PAGE_SAVED_DIRTY
    # (shadow stack) took bit 58 — believed v6.6 [UNVERIFIED]; 6.12.8 = 57.
    return 57 if version >= (6, 6) else 58


def has_pmd_pud_special(version: Version, arch: str = "x86_64") -> Tuple[bool, bool]:
    """Whether ``pmd_special()``/``pud_special()`` exist (huge PFNMAP).

    75182022a043 "mm/x86: support large pfn mappings" in Peter Xu's "mm: Support
    huge pfnmaps", v6.12 [inferred]; arm64 never gets PUD pfnmap.
    """
    has = version >= (6, 12)
    return has, has and arch == "x86_64"


def dax_refcounted(version: Version) -> bool:
    """fsdax/devdax pages are refcounted folios: 7851bf649d42 "fs/dax: Fix
    ZONE_DEVICE page reference counts", v6.15."""
    return version >= (6, 15)


def single_device_exclusive(version: Version) -> bool:
    """One ``SWP_DEVICE_EXCLUSIVE`` type: v6.15 [inferred]."""
    return version >= (6, 15)


def has_swapin_error(version: Version) -> bool:
    """``SWP_SWAPIN_ERROR`` exists: only before "mm: use pte markers for swap
    errors" (v6.2, from memory; kernel-facts: UNVERIFIED, between 6.2 and 6.12)."""
    return version < (6, 2)


def pte_markers(version: Version) -> Dict[str, int]:
    """PTE-marker bits of a ``SWP_PTE_MARKER`` offset (kernel-facts §2.2)."""
    markers = {"uffd-wp": 1 << 0}  # PTE_MARKER_UFFD_WP, v5.19
    if version >= (6, 6):
        # PTE_MARKER_SWAPIN_ERROR (v6.2) renamed PTE_MARKER_POISONED, v6.6
        # [from memory; kernel-facts: 6.12.8:swapops.h:424-431 has POISONED].
        markers["poisoned"] = 1 << 1
    elif version >= (6, 2):
        markers["swapin-error"] = 1 << 1
    if version >= (6, 13):
        # PTE_MARKER_GUARD (guard regions, v6.13 [inferred]; 7.2.8:swapops.h:283-300).
        markers["guard"] = 1 << 2
    return markers


def gup_facts(version: Version) -> Tuple[bool, bool, bool, bool]:
    """``(gup_p2pdma_gate, gup_longterm_file_check, gup_fast_renamed,
    fb_defio_page_mapping)`` by release,
    for layouts built without a kernel (the layout stage learns them from an
    enumerator and symbols): FOLL_PCI_P2PDMA 4293399dc6ed (v6.2);
    "mm/gup: disallow FOLL_LONGTERM GUP-nonfast writing to file-backed
    mappings" 8ac268436e6d (v6.5); "mm/gup: consistently name GUP-fast
    functions" 23babe1934d7 (v6.10); fb_defio's move to
    mapping_wrprotect_range() (v6.15 [inferred]: after 6.12, before 7.2).
    The P2PDMA gate also needs CONFIG_PCI_P2PDMA, which a release cannot
    tell: these assume it (Debian's 6.12 lacks it; the layout stage sees so)."""
    return version >= (6, 2), version >= (6, 5), version >= (6, 10), version < (6, 15)


# ---------------------------------------------------------------------------
# arm64 descriptor bits (arm64-facts §1, §5)
# ---------------------------------------------------------------------------


def arm64_bits(version: Version, *, lpa2: bool, uffd_wp: bool, mair) -> "Arm64Bits":
    """The arm64 bit positions that are macros (no debug info carries them).

    v6.10 (Ryan Roberts' series in "[GIT PULL] arm64 updates for 6.10"):
    b28c74e25967 "generalize PMD_PRESENT_INVALID for all levels", f0f5863a0fb0
    "Remove PTE_PROT_NONE bit" and 55564814a838 "Move PTE_PRESENT_INVALID to
    overlay PTE_NG" made bit 11 the present-invalid bit of every level and
    moved the swap type to bits 6-10 and the offset to 12-61
    (6.12.117:pgtable.h:1432-1437, 7.2.13:1523-1528); 5b32510af77b "Add uffd
    write-protect support" put PTE_UFFD_WP at 58 and PTE_SWP_UFFD_WP at 3 when
    HAVE_ARCH_USERFAULTFD_WP (selected ``if USERFAULTFD``, *uffd_wp*). Before:
    PTE_PROT_NONE 58, PMD_PRESENT_INVALID 59, swap type 3-7, offset 8-57
    (6.1.176:pgtable-prot.h:21,28; pgtable.h:1000-1016).
    """
    from .records import Arm64Bits

    if version >= (6, 10):
        return Arm64Bits(present_invalid_bit=11, prot_none_bit=None, pmd_present_invalid_bit=None,
                         uffd_wp_bit=58 if uffd_wp else None, swp_uffd_wp_bit=3 if uffd_wp else None,
                         swp_type_shift=6, swp_offset_shift=12, lpa2=lpa2, mair=tuple(mair))
    return Arm64Bits(present_invalid_bit=None, prot_none_bit=58, pmd_present_invalid_bit=59, uffd_wp_bit=None,
                     swp_uffd_wp_bit=None, swp_type_shift=3, swp_offset_shift=8, lpa2=lpa2, mair=tuple(mair))


def arm64_addr_top(version: Version) -> int:
    """One past the top bit of ``PTE_ADDR_LOW``: 50 since the LPA2 series
    ("arm64: mm: Add LPA2 support to phys<->pte conversion routines", with
    352b0395b505, v6.9; 6.12.117:pgtable-hwdef.h:174), 48 before (6.1.176:158)."""
    return 50 if version >= (6, 9) else 48
