# SPDX-License-Identifier: GPL-2.0-or-later
"""
Records
-------

The plain, immutable records that pass between the pipeline's stages::

    target → layout → walk → decode → classify → rules → report

Nothing here reads a kernel: a :class:`Layout` is *what was learned* about a
kernel, a :class:`Leaf` is one decoded page-table entry, a :class:`PfnInfo` is
what a PFN turned out to be, a :class:`Run` is a coalesced stretch of leaves
that share every property a rule looks at, and a :class:`Finding` is a rule's
verdict on a run or a VMA.
"""

import enum
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

__all__ = (
    "Level",
    "LEVEL_SHIFT",
    "level_shift",
    "TableLevel",
    "Geometry",
    "Arm64Bits",
    "EntryKind",
    "PageKind",
    "Severity",
    "Learned",
    "SwapTypes",
    "Layout",
    "Vma",
    "Leaf",
    "PfnInfo",
    "Run",
    "Finding",
)


class Level(enum.IntEnum):
    """Page-table level of an entry (the kernel's ``enum pgtable_level`` order)."""

    PTE = 1
    PMD = 2
    PUD = 3
    P4D = 4
    PGD = 5

    @property
    def label(self) -> str:
        return self.name.lower()


def level_shift(level: Level, page_shift: int) -> int:
    """Address bits translated below an entry of *level*: log2 of the bytes it maps.

    Tables of 8-byte entries fill one page, so each level above the PTE adds
    ``page_shift - 3`` bits: x86-64 and arm64 4K 12/21/30/39/48, arm64 16K
    14/25/36/47, 64K 16/29/42 (arm64 ``ARM64_HW_PGTABLE_LEVEL_SHIFT()``,
    arch/arm64/include/asm/pgtable-hwdef.h). The level is named by this span:
    with 4 levels of 4 KiB pages the top table's entries map 2^39 bytes, a
    P4D entry's span (the kernel's folded ``p4d_offset()`` returns the PGD
    entry itself).
    """
    return page_shift + (page_shift - 3) * (int(level) - 1)


#: Address bits translated below each level with 4 KiB pages (x86-64, arm64 4K).
LEVEL_SHIFT: Mapping[Level, int] = {lvl: level_shift(lvl, 12) for lvl in Level}


class EntryKind(str, enum.Enum):
    """What a leaf entry is, after decoding its raw value."""

    PRESENT = "present"
    PROTNONE = "protnone"  # PROT_NONE or NUMA-hinting: present to the kernel, PFN inverted
    SWAP = "swap"
    MIGRATION = "migration"
    DEVICE_PRIVATE = "device-private"
    DEVICE_EXCLUSIVE = "device-exclusive"
    HWPOISON = "hwpoison"
    MARKER = "marker"  # PTE marker: uffd-wp, poisoned, guard
    SWAPIN_ERROR = "swapin-error"  # 6.1 only; later a PTE marker
    GARBAGE = "garbage"  # non-present and matches no encoding of this kernel

    #: True when the CPU (or the kernel, for PROT_NONE) sees a PFN. Plain
    #: attributes, set once below: the audit reads them for every leaf.
    maps_memory: bool


class PageKind(str, enum.Enum):
    """What lives at a PFN."""

    RAM = "ram"
    ZERO_PAGE = "zero-page"
    HUGE_ZERO = "huge-zero"
    FSDAX = "fsdax"  # MEMORY_DEVICE_FS_DAX
    DEVDAX = "devdax"  # MEMORY_DEVICE_GENERIC of device-dax (no ops, no owner)
    DEVICE_GENERIC = "device-generic"  # other MEMORY_DEVICE_GENERIC users (Xen unpopulated-alloc)
    P2PDMA = "p2pdma"  # MEMORY_DEVICE_PCI_P2PDMA
    DEVICE_PRIVATE = "device-private"  # MEMORY_DEVICE_PRIVATE
    DEVICE_COHERENT = "device-coherent"  # MEMORY_DEVICE_COHERENT
    NO_MEMMAP = "no-memmap"  # no struct page: PCI BAR, reserved, beyond RAM
    NONE = "none"  # the entry carries no PFN (plain swap, marker)

    #: A ZONE_DEVICE page (it has a pgmap). Set once below, like
    #: :attr:`EntryKind.maps_memory`.
    is_zone_device: bool
    #: The PFN has a struct page.
    has_memmap: bool


_ZONE_DEVICE_KINDS = frozenset(
    {
        PageKind.FSDAX,
        PageKind.DEVDAX,
        PageKind.DEVICE_GENERIC,
        PageKind.P2PDMA,
        PageKind.DEVICE_PRIVATE,
        PageKind.DEVICE_COHERENT,
    }
)


for _entry_kind in EntryKind:
    _entry_kind.maps_memory = _entry_kind in (EntryKind.PRESENT, EntryKind.PROTNONE)
for _page_kind in PageKind:
    _page_kind.is_zone_device = _page_kind in _ZONE_DEVICE_KINDS
    _page_kind.has_memmap = _page_kind not in (PageKind.NO_MEMMAP, PageKind.NONE)


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Learned:
    """A value learned about the target kernel, and how it was learned.

    ``how`` is one of ``"enum"``, ``"member"``, ``"symbol"``, ``"type"``,
    ``"vmcoreinfo"``, ``"kconfig"``, ``"variable"`` or ``"version table"``;
    ``detail`` names the enumerator, member, symbol or table row used.
    """

    value: object
    how: str
    detail: str = ""


@dataclass(frozen=True)
class SwapTypes:
    """Swap-entry type numbers of one kernel (``include/linux/swap.h``).

    Types that the kernel does not have are ``None``.
    """

    max_swapfiles: int
    hwpoison: Optional[int]
    migration_read: Optional[int]
    migration_read_exclusive: Optional[int]
    migration_write: Optional[int]
    device_write: Optional[int]
    device_read: Optional[int]
    #: Before v6.15 two types (write, read); from v6.15 one (both fields equal).
    device_exclusive_write: Optional[int]
    device_exclusive_read: Optional[int]
    pte_marker: Optional[int]
    swapin_error: Optional[int]
    #: ``SWP_PFN_BITS`` = MAX_PHYSMEM_BITS - PAGE_SHIFT: PFN bits of a PFN-carrying offset.
    pfn_bits: int


@dataclass(frozen=True)
class TableLevel:
    """One level of the page-table tree as a walk meets it, top first.

    ``level`` is the kernel's name for the entries (the root is always the
    PGD); ``leaf_level`` the level a leaf found here is reported at, named by
    its span (:func:`level_shift`); ``shift`` the address bits below one
    entry; ``entries`` the entries of one table (a root may be smaller than a
    page: arm64 with 52-bit VA has 16 or 32).
    """

    level: Level
    leaf_level: Level
    shift: int
    entries: int


@dataclass(frozen=True)
class Geometry:
    """Page-table geometry of one architecture, granule and paging mode.

    ``levels`` are top first, the last being the PTE level. A table entry
    (``raw & table_mask == table_bits``) points at the next table at
    :meth:`address`; the same extraction gives a leaf's output address
    (huge leaves then clear their alignment bits).
    """

    page_shift: int
    va_bits: int
    levels: Tuple[TableLevel, ...]
    #: Bits that make an entry above the PTE level a table pointer, and their value.
    table_mask: int
    table_bits: int
    #: Output address: ``(raw & addr_mask) | ((raw & addr_high_mask) << addr_high_shift)``
    #: (arm64 52-bit PA: PA[51:50] in bits 9:8 with LPA2, PA[51:48] in bits 15:12 with 64K pages).
    addr_mask: int
    addr_high_mask: int = 0
    addr_high_shift: int = 0

    @classmethod
    def build(
        cls, *, page_shift: int, va_bits: int, table_mask: int, table_bits: int, addr_mask: int,
        addr_high_mask: int = 0, addr_high_shift: int = 0,
    ) -> "Geometry":
        """The geometry of *va_bits* translated with ``2**page_shift``-byte pages.

        Levels = ceil((va_bits - page_shift) / (page_shift - 3)), as
        ``ARM64_HW_PGTABLE_LEVELS()`` computes; the same formula gives x86-64's
        4 (48 bits) and 5 (57 bits). The root has ``2**(va_bits - root shift)``
        entries, every other table a page of 8-byte entries.
        """
        per = page_shift - 3
        count = (va_bits - 4) // per
        levels = []
        for depth in range(count):
            span = Level(count - depth)
            shift = level_shift(span, page_shift)
            entries = 1 << (va_bits - shift if depth == 0 else per)
            levels.append(TableLevel(Level.PGD if depth == 0 else span, span, shift, min(entries, 1 << per)))
        return cls(page_shift, va_bits, tuple(levels), table_mask, table_bits, addr_mask,
                   addr_high_mask, addr_high_shift)

    def address(self, raw: int) -> int:
        """Output address of entry *raw*: the next table's, or a leaf's (before alignment)."""
        return (raw & self.addr_mask) | ((raw & self.addr_high_mask) << self.addr_high_shift)

    def pages(self, level: Level) -> int:
        """Base pages one entry of *level* maps (512 per PMD with 4 KiB pages, 2048 with 16 KiB)."""
        return 1 << (level_shift(level, self.page_shift) - self.page_shift)


@dataclass(frozen=True)
class Arm64Bits:
    """The version-dependent arm64 descriptor facts (arm64-facts §1, §2, §5).

    Bits are bit numbers, ``None`` where this kernel has no such bit.
    """

    #: ``PTE_PRESENT_INVALID`` (= nG, bit 11, read only when VALID is clear), v6.10+.
    present_invalid_bit: Optional[int]
    #: ``PTE_PROT_NONE`` (bit 58, VALID clear), before v6.10.
    prot_none_bit: Optional[int]
    #: ``PMD_PRESENT_INVALID`` (bit 59 of a PMD, VALID clear), before v6.10.
    pmd_present_invalid_bit: Optional[int]
    #: ``PTE_UFFD_WP`` (bit 58, valid entries) and ``PTE_SWP_UFFD_WP`` (bit 3, swap entries), v6.10+.
    uffd_wp_bit: Optional[int]
    swp_uffd_wp_bit: Optional[int]
    #: ``__SWP_TYPE_SHIFT`` and ``__SWP_OFFSET_SHIFT`` (5 type bits, 50 offset bits).
    swp_type_shift: int
    swp_offset_shift: int
    #: LPA2 in use (TCR_EL1.DS): bits 9:8 are PA[51:50], not SH.
    lpa2: bool
    #: Memory type selected by each AttrIndx (MAIR_EL1 attribute slots, ``MT_*``).
    mair: Tuple[str, ...]


@dataclass(frozen=True)
class VmaStruct:
    """Where the fields the audit reads sit in ``struct vm_area_struct``, so
    that a VMA costs one read of the whole struct rather than one per member.

    ``flags`` is the offset of the flags as ``flags_words`` unsigned longs:
    ``vm_flags`` (one word), or from 7.x the ``vma_flags_t flags`` bitmap it
    aliases, read whole so that flags past its first word are not lost.
    """

    size: int
    start: int
    end: int
    pgoff: int
    file: int
    ops: int
    flags: int
    flags_words: int


@dataclass(frozen=True)
class MapleTree:
    """Where an mm's VMA tree (a maple tree, v6.1+: 763ecb035029, "mm: remove
    the vma linked list") and its nodes keep what the walk reads, so that a
    node costs one read of ``struct maple_node``.

    ``root``: offset of ``mm_mt.ma_root`` in ``struct mm_struct``. Per node
    kind, ``(pivot offset, pivots, slot offset, slots, meta.end offset)`` of
    ``mr64`` (``maple_range_64``/``maple_leaf_64``) and ``ma64``
    (``maple_arange_64``).
    """

    root: int
    node_size: int
    range64: Tuple[int, int, int, int, int]
    arange64: Tuple[int, int, int, int, int]


@dataclass(frozen=True)
class Layout:
    """What one target kernel is, as far as the audit cares.

    Every decision that differs between kernel versions is a field here;
    ``learned`` maps each field name to the :class:`Learned` record that says
    how it was obtained (``drgn-p2p layout`` prints it).
    """

    arch: str  # "x86_64", "arm64"
    release: str  # utsname release, for display only; never compared
    levels: int  # 2 to 5: len(geometry.levels)
    page_shift: int
    #: Mask of the PFN field of a 4 KiB leaf (PTE_PFN_MASK with sme/physical mask applied).
    pfn_mask: int
    #: Memory-encryption (SME) bit to strip from entries, 0 when none.
    sme_mask: int
    #: Devmap software bit number, ``None`` when the kernel has none (v6.17+).
    devmap_bit: Optional[int]
    #: Whether ``pmd_special()``/``pud_special()`` exist (huge PFNMAP, v6.12+).
    has_pmd_special: bool
    has_pud_special: bool
    #: Whether fsdax/devdax pages are refcounted folios (v6.15+).
    dax_refcounted: bool
    swap: SwapTypes
    #: PTE-marker offset bits: name → bit value ("uffd-wp", "poisoned", "guard").
    pte_markers: Mapping[str, int]
    #: VMA flag name (without ``VM_``) → bit number.
    vm_flags: Mapping[str, int]
    #: ``enum memory_type`` name (without ``MEMORY_DEVICE_``) → value.
    memory_types: Mapping[str, int]
    #: Where the dev_pagemap pointer lives: "page" or "folio".
    pgmap_in: str
    #: ``ZONE_DEVICE`` value of ``enum zone_type``, ``None`` without ZONE_DEVICE.
    zone_device: Optional[int]
    zero_pfn: int
    huge_zero_pfn: Optional[int]
    #: Page-table geometry: levels, shifts, table sizes, table/address bits.
    geometry: Geometry
    #: ``ZONES_PGSHIFT``: where the zone number sits in ``page->flags``
    #: (``None`` when it could not be learned); the field is ``zone_bits`` wide.
    zone_shift: Optional[int] = None
    zone_bits: int = 0
    #: ``enum zone_type`` value → name (``4`` → ``"ZONE_DEVICE"``).
    zone_names: Mapping[int, str] = field(default_factory=dict)
    #: GUP refuses P2PDMA pages without ``FOLL_PCI_P2PDMA`` (4293399dc6ed, v6.2).
    gup_p2pdma_gate: bool = False
    #: FOLL_LONGTERM write pins of file mappings that need dirty tracking are
    #: refused (``writable_file_mapping_allowed()``, ``gup_fast_folio_allowed()``;
    #: Lorenzo Stoakes' series of v6.5, which also removed io_uring's own VMA check).
    gup_longterm_file_check: bool = False
    #: ``highest_memmap_pfn``: above it ``vm_normal_page()`` reports "Bad page
    #: map" instead of returning a struct page (grows with memremap_pages()).
    highest_memmap_pfn: Optional[int] = None
    #: The GUP-fast functions carry their v6.10 names (``gup_fast_pte_range``…, 23babe1934d7).
    gup_fast_renamed: bool = False
    #: fbdev's deferred I/O sets ``page->mapping`` of the pages it maps (until
    #: the series that moved it to ``mapping_wrprotect_range()``), so a futex
    #: on them finds a key; after it ``get_futex_key()`` meets a NULL mapping.
    fb_defio_page_mapping: bool = True
    #: GUP-fast sends an order-0 folio whose ``mapping`` is NULL (a driver's
    #: page) to the slow path: with CONFIG_SECRETMEM, ``gup_fast_folio_allowed()``
    #: reads the mapping to rule out secretmem (65291dcfcf89, v6.9).
    gup_fast_secretmem_mapping: bool = False
    #: When ``/proc/PID/mem`` reads with FOLL_FORCE (``proc_mem_force_override``,
    #: 41e8149c8892 "proc: add config & param to block forcing mem writes",
    #: v6.12): ``"always"`` (and before it), ``"ptrace"`` (only the tracer) or ``"never"``.
    proc_mem_force: str = "always"
    #: arm64 descriptor facts (``None`` on other architectures).
    arm64: Optional[Arm64Bits] = None
    #: Member offsets of ``struct vm_area_struct`` (``None``: read member by member).
    vma_struct: Optional[VmaStruct] = field(default=None, compare=False)
    #: The mm's VMA tree, read node by node (``None``: drgn's ``for_each_vma()``).
    vma_tree: Optional[MapleTree] = field(default=None, compare=False)
    learned: Mapping[str, Learned] = field(default_factory=dict, compare=False)

    def vm_flag(self, name: str) -> int:
        """The mask of VMA flag *name* (``"PFNMAP"``), 0 if this kernel lacks it."""
        bit = self.vm_flags.get(name)
        return 0 if bit is None else 1 << bit

    def vm_flag_names(self, flags: int) -> List[str]:
        """Names (without ``VM_``) of the VMA flags set in *flags*, by bit.

        A bit with several names takes the first this kernel declares; a bit
        with none is ``bitN``.
        """
        by_bit: Dict[int, str] = {}
        for name, bit in self.vm_flags.items():
            by_bit.setdefault(bit, name)
        return [by_bit.get(bit, f"bit{bit}") for bit in range(flags.bit_length()) if flags >> bit & 1]


@dataclass(frozen=True)
class Vma:
    """One ``struct vm_area_struct *`` of one process."""

    pid: int
    comm: str
    mm: int  # address of the struct mm_struct
    address: int  # address of the struct vm_area_struct
    start: int
    end: int
    flags: int  # vm_flags
    pgoff: int
    file: Optional[str]  # path of vm_file, None for anonymous memory
    ops: Optional[str]  # symbol name of vm_ops, None when NULL
    #: Symbol name of ``vm_ops->access`` (None when either is NULL).
    access: Optional[str] = None
    #: ``vm_ops->fault`` is set, or there are no vm_ops (a hole can be faulted in).
    fault: bool = True
    #: ``vma_needs_dirty_tracking()``: shared, writable, and the vm_ops have
    #: ``page_mkwrite``/``pfn_mkwrite`` or the file's backing device writes back.
    dirty_tracking: bool = False

    def has(self, layout: Layout, *names: str) -> bool:
        """Whether any of the VMA flags *names* is set."""
        flags, bits = self.flags, layout.vm_flags
        for name in names:
            bit = bits.get(name)
            if bit is not None and flags >> bit & 1:
                return True
        return False


@dataclass(frozen=True)
class FolioFacts:
    """What the audit read of the folio behind the first page of a run
    (``struct folio``): what GUP tests before it takes a page. Read where
    the VMA does not tell (``pipeline.reads_folio``): device pages, devmap
    leaves, VM_MIXEDMAP memory."""

    #: ``folio_ref_count()`` is 0: GUP-fast's folio_ref_try_add() fails, the
    #: slow path's try_grab_folio() WARNs and returns -ENOMEM.
    unreferenced: bool = False
    #: ``folio->mapping`` is NULL: gup_fast_folio_allowed() cannot rule out secretmem.
    unmapped: bool = False


#: Nothing read (not a device page, or no kernel to read it from).
NO_FOLIO_FACTS = FolioFacts()


@dataclass(frozen=True)
class Leaf:
    """One decoded leaf entry (a PTE, or a PMD/PUD that maps or encodes a page).

    ``pfn`` is the PFN the entry maps (present and PROT_NONE entries) or
    carries (migration, device-private, device-exclusive, hwpoison entries),
    else ``None``. ``special``/``devmap``/``writable`` are meaningful for
    present and PROT_NONE entries; for swap-format entries ``writable`` is
    the write permission the entry encodes where it encodes one.
    """

    va: int
    level: Level
    raw: int
    kind: EntryKind
    pfn: Optional[int]
    special: bool = False
    devmap: bool = False
    writable: bool = False
    swap_type: Optional[int] = None
    swap_offset: Optional[int] = None
    #: ``PAGE_SHIFT`` of the kernel (the decoder sets it from the layout; arm64 16K: 14).
    page_shift: int = 12

    @property
    def size(self) -> int:
        return 1 << level_shift(self.level, self.page_shift)

    @property
    def huge(self) -> bool:
        return self.level > Level.PTE


@dataclass(frozen=True)
class PfnInfo:
    """What a PFN is.

    ``pgmap`` is the ``struct dev_pagemap *`` address for ZONE_DEVICE PFNs;
    ``owner`` names who provides the memory (a PCI device for P2PDMA, the
    iomem resource for no-memmap PFNs, the namespace for DAX);
    ``memmap_readable`` is False when the struct page could not be read
    (e.g. an altmap memmap through /proc/kcore) and the kind was taken from
    the pgmap alone.
    """

    kind: PageKind
    pgmap: Optional[int] = None
    owner: Optional[str] = None
    memmap_readable: bool = True


@dataclass(frozen=True)
class Run:
    """Adjacent leaves of one VMA that agree in every property rules look at.

    ``first`` is the first leaf; ``count`` leaves of ``first.size`` follow it
    contiguously in virtual address space.
    """

    vma: Vma
    first: Leaf
    count: int
    page: PfnInfo

    @property
    def start(self) -> int:
        return self.first.va

    @property
    def end(self) -> int:
        return self.first.va + self.count * self.first.size


@dataclass(frozen=True)
class Finding:
    """A rule's verdict on a run of leaves (or on a whole VMA, ``first=None``)."""

    rule: str
    severity: Severity
    vma: Vma
    start: int
    end: int
    count: int
    message: str
    first: Optional[Leaf] = None
    page: Optional[PfnInfo] = None
    evidence: Tuple[Tuple[str, str], ...] = ()

    def as_dict(self) -> Dict[str, object]:
        return {
            "rule": self.rule,
            "severity": self.severity.label,
            "pid": self.vma.pid,
            "comm": self.vma.comm,
            "vma": {"start": self.vma.start, "end": self.vma.end, "flags": self.vma.flags},
            "start": self.start,
            "end": self.end,
            "count": self.count,
            "message": self.message,
            "level": self.first.level.label if self.first else None,
            "raw": self.first.raw if self.first else None,
            "page_kind": self.page.kind.value if self.page else None,
            "evidence": dict(self.evidence),
        }
