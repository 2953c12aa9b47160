# SPDX-License-Identifier: GPL-2.0-or-later
"""
Rules
-----

The rule catalogue: what the mm maintainers argued page-table entries and VMA
flags must look like for ZONE_DEVICE pages and PFN/IO mappings, as data plus a
small predicate. Each rule cites one thread in ``shared/threads/`` with a short
verbatim quote, says which kernels it concerns, and reports through
``applies(layout)`` why it cannot apply to a given kernel.

Two kinds of rule:

* run rules, ``check(run, layout) -> Optional[str]``, judge one coalesced
  :class:`~drgn_p2p.records.Run` (every leaf of a run agrees in what the
  rules read, so judging ``run.first`` judges them all);
* VMA rules, ``check(summary, layout) -> Optional[str]``, judge a
  :class:`VmaSummary` collected with :class:`VmaTally` over a VMA's runs.

One defect, one finding: the "missing special bit" defect is split between
``pfnmap-not-special`` (struct-page PFN in a VM_PFNMAP VMA),
``huge-pfn-not-special`` (PMD/PUD leaves) and ``no-memmap-not-special`` (PTEs
without memmap); the generic rules leave ZONE_DEVICE page kinds to the rules
for that kind. Rules never look at a kernel version, only at the layout.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from . import arch
from .records import EntryKind, Finding, Layout, Leaf, Level, PageKind, Run, Severity, Vma

__all__ = (
    "Rule",
    "RULES",
    "VmaSummary",
    "VmaTally",
    "rule_by_id",
    "rules_for",
    "evaluate_run",
    "evaluate_vma",
    "evaluate_runs",
    "rule_rows",
)

# Thread files (shared/threads/), cited by file name.
T_P2P_VMA_2019 = "2019-01-p2p-device-vma-struct-page.txt"
T_FRAME_VECTOR = "2020-11-frame-vector-foll_longterm-pfnmap-special.txt"
T_FSDAX_RDMA = "2021-08-fsdax-devmap-special-rdma.txt"
T_P2PDMA_MMAP = "2021-09-p2pdma-pci_mmap_p2pmem-vm_mixedmap.txt"
T_HMM_PRIVATE = "2025-07-hmm-device-private-pfn.txt"


def _always(layout: Layout) -> Optional[str]:
    return None


@dataclass(frozen=True)
class Rule:
    """One rule. ``scope`` is ``"run"`` or ``"vma"``; ``check`` takes a
    :class:`Run` or a :class:`VmaSummary` (and the layout) and returns the
    finding's message, or ``None`` when the rule is satisfied."""

    id: str
    title: str
    severity: Severity
    thread: str
    quote: str
    kernels: str
    check: Callable[..., Optional[str]]
    applies: Callable[[Layout], Optional[str]] = _always
    scope: str = "run"
    #: Where it applies per architecture, and why it differs there (with the commit).
    arches: str = "x86-64 and arm64 alike"


# ---------------------------------------------------------------------------
# Helpers (all O(1); a run's first leaf stands for all of its leaves)
# ---------------------------------------------------------------------------

_DAX = (PageKind.FSDAX, PageKind.DEVDAX)
_ZERO = (PageKind.ZERO_PAGE, PageKind.HUGE_ZERO)


def _level_has_special(level: Level, layout: Layout) -> bool:
    """Whether the kernel reads a special bit at *level*: ``pte_special()``
    always (ARCH_HAS_PTE_SPECIAL on x86-64/arm64), ``pmd_special()`` /
    ``pud_special()`` only with huge PFNMAP support (v6.12+; before, the
    generic fallbacks return false)."""
    if level == Level.PTE:
        return True
    if level == Level.PMD:
        return layout.has_pmd_special
    if level == Level.PUD:
        return layout.has_pud_special
    return False


def _special(leaf: Leaf, layout: Layout) -> bool:
    """The special bit as the kernel sees it (bit ignored where pXd_special() is false)."""
    return leaf.special and _level_has_special(leaf.level, layout)


def _is_cow(vma: Vma, layout: Layout) -> bool:
    """``is_cow_mapping()``: ``(flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE``."""
    return not vma.has(layout, "SHARED") and vma.has(layout, "MAYWRITE")


def _linear(run: Run, layout: Layout) -> bool:
    """The PFNMAP linearity rule of ``vm_normal_page()``: ``pfn == vm_pgoff +
    ((addr - vm_start) >> PAGE_SHIFT)``. Coalescing keeps this constant over a run."""
    leaf, vma = run.first, run.vma
    return leaf.pfn == vma.pgoff + ((leaf.va - vma.start) >> layout.page_shift)


def _cow_anon(run: Run, layout: Layout) -> bool:
    """A COWed anonymous page in a private PFNMAP (``remap_pfn_range()`` + write
    fault): RAM, not special, not at the linear PFN. ``vm_normal_page()`` treats
    exactly these as normal pages."""
    return run.page.kind == PageKind.RAM and _is_cow(run.vma, layout) and not _linear(run, layout)


def _lvl(leaf: Leaf) -> str:
    return leaf.level.name  # "PTE", "PMD", "PUD"


def _page_desc(run: Run) -> str:
    kind = run.page.kind.value
    return f"{kind} ({run.page.owner})" if run.page.owner else kind


def _flags_text(flags: int, layout: Layout) -> str:
    """``0x400`` → ``"PFNMAP"``, for messages and evidence."""
    return "|".join(layout.vm_flag_names(flags)) or "0"


def _pfn_vma(vma: Vma, layout: Layout) -> bool:
    return vma.has(layout, "PFNMAP", "MIXEDMAP")


# ---------------------------------------------------------------------------
# Run rules
# ---------------------------------------------------------------------------


def _check_pfnmap_not_special(run: Run, layout: Layout) -> Optional[str]:
    leaf, kind = run.first, run.page.kind
    if not leaf.kind.maps_memory or not run.vma.has(layout, "PFNMAP"):
        return None
    if not _level_has_special(leaf.level, layout) or leaf.special:
        return None  # huge-pfn-not-special covers levels without a special bit
    if not kind.has_memmap or kind.is_zone_device:
        return None  # no-memmap-not-special / huge-pfn-not-special / per-kind rules
    if _cow_anon(run, layout):
        return None
    where = "at the linear PFN" if _linear(run, layout) else "in a shared (non-COW) VMA"
    return (
        f"{_lvl(leaf)} in a VM_PFNMAP VMA maps a {_page_desc(run)} PFN {where} without "
        f"{arch.special_label(layout)}; expected special (only COWed anon pages of a private "
        f"PFNMAP may be non-special): vm_normal_page() and GUP-fast would treat it as a normal page"
    )


def _check_huge_pfn_not_special(run: Run, layout: Layout) -> Optional[str]:
    leaf, kind = run.first, run.page.kind
    if not leaf.huge or not leaf.kind.maps_memory or kind.is_zone_device:
        return None
    pfnmap, io = run.vma.has(layout, "PFNMAP"), run.vma.has(layout, "IO")
    no_memmap = kind == PageKind.NO_MEMMAP
    lvl = _lvl(leaf)
    if not _level_has_special(leaf.level, layout):
        if not (pfnmap or io or no_memmap):
            return None
        what = "maps a PFN without struct page" if no_memmap else "is in a VM_PFNMAP/VM_IO VMA"
        return (
            f"huge {lvl} leaf {what} on a kernel without {lvl.lower()}_special(): GUP-fast takes every "
            f"huge leaf for struct-page memory; expected PFN/IO memory to be mapped with special PTEs only"
        )
    if leaf.special or (pfnmap and not no_memmap):
        return None  # the PFNMAP struct-page case is pfnmap-not-special's
    if not (no_memmap or io):
        return None
    what = "maps a PFN without struct page" if no_memmap else "is in a VM_IO VMA"
    return (
        f"huge {lvl} leaf {what} but {arch.special_label(layout)} is clear; expected "
        f"{lvl.lower()}_mkspecial() (vmf_insert_pfn_{lvl.lower()}()): GUP-fast would dereference {lvl.lower()}_page()"
    )


def _check_no_memmap_not_special(run: Run, layout: Layout) -> Optional[str]:
    leaf = run.first
    if leaf.level != Level.PTE or not leaf.kind.maps_memory or leaf.special:
        return None
    if run.page.kind != PageKind.NO_MEMMAP:
        return None
    return (
        f"PTE maps a PFN without struct page ({run.page.owner or 'no memmap'}) but "
        f"{arch.special_label(layout)} is clear; expected pte_mkspecial(): GUP-fast and "
        f"vm_normal_page() would dereference a struct page that does not exist"
    )


def _check_no_memmap_outside_pfnmap(run: Run, layout: Layout) -> Optional[str]:
    leaf = run.first
    if not leaf.kind.maps_memory or run.page.kind != PageKind.NO_MEMMAP or _pfn_vma(run.vma, layout):
        return None
    return (
        f"{_lvl(leaf)} maps a PFN without struct page ({run.page.owner or 'no memmap'}) in a VMA "
        f"with neither VM_PFNMAP nor VM_MIXEDMAP (flags {_flags_text(run.vma.flags, layout)}); "
        f"expected VM_PFNMAP (remap_pfn_range()/vmf_insert_pfn()) or VM_MIXEDMAP"
    )


def _check_special_outside_pfnmap(run: Run, layout: Layout) -> Optional[str]:
    leaf, kind = run.first, run.page.kind
    if not leaf.kind.maps_memory or not _special(leaf, layout) or _pfn_vma(run.vma, layout):
        return None
    if kind in _ZERO or kind == PageKind.NO_MEMMAP or kind == PageKind.NONE or kind.is_zone_device:
        return None  # zero pages are special by design; other kinds have their own rules
    if leaf.devmap and layout.devmap_bit is not None:
        return None  # vm_normal_page() accepts pte_devmap(); devmap-not-dax judges the page
    return (
        f"{_lvl(leaf)} with {arch.special_label(layout)} maps a {_page_desc(run)} page in a VMA with "
        f"neither VM_PFNMAP nor VM_MIXEDMAP (flags {_flags_text(run.vma.flags, layout)}); only the zero "
        f"page, the huge zero page or a devmap DAX PTE may be special there: vm_normal_page() reports "
        f"\"Bad page map\""
    )


def _check_p2pdma_leaf(run: Run, layout: Layout) -> Optional[str]:
    leaf = run.first
    if not leaf.kind.maps_memory or run.page.kind != PageKind.P2PDMA:
        return None
    if run.vma.has(layout, "PFNMAP"):
        # The BAR mapped as a BAR: a sysfs resourceN mmap (pci_mmap_resource_range()
        # → io_remap_pfn_range()) of a BAR that also hosts p2pmem installs special
        # PTEs in a VM_PFNMAP|VM_IO VMA, which GUP and vm_normal_page() never treat
        # as pages. Only a leaf the kernel would take for a page is wrong there.
        wrong = []
        if not _special(leaf, layout):
            wrong.append(f"{arch.special_label(layout)} is clear" if _level_has_special(leaf.level, layout)
                         else f"it is a huge {_lvl(leaf)} leaf on a kernel without {_lvl(leaf).lower()}_special()")
        if leaf.devmap:
            wrong.append(f"{arch.devmap_label(layout)} is set")
        if not wrong:
            return None
        return (
            f"P2PDMA page in a VM_PFNMAP VMA mapped wrongly: {', '.join(wrong)}; expected special leaves "
            f"(no devmap) as io_remap_pfn_range() installs them for a BAR mmap: GUP-fast would take a "
            f"P2PDMA page it must refuse without FOLL_PCI_P2PDMA"
        )
    wrong = []
    if leaf.special:
        wrong.append(f"{arch.special_label(layout)} is set")
    if leaf.devmap:
        wrong.append(f"{arch.devmap_label(layout)} is set")
    if leaf.huge:
        wrong.append(f"it is a huge {_lvl(leaf)} leaf")
    if not wrong:
        return None
    return (
        f"P2PDMA page mapped wrongly: {', '.join(wrong)}; expected a plain refcounted 4 KiB PTE "
        f"(no special, no devmap) in a VM_MAYSHARE|VM_MIXEDMAP VMA, as p2pmem_alloc_mmap() + "
        f"vm_insert_page() install it, or a special PTE of a VM_PFNMAP BAR mmap"
    )


def _check_p2pdma_vma_flags(run: Run, layout: Layout) -> Optional[str]:
    leaf, vma = run.first, run.vma
    if not leaf.kind.maps_memory or run.page.kind != PageKind.P2PDMA or vma.has(layout, "PFNMAP"):
        return None
    # p2pmem_alloc_mmap() tests VM_MAYSHARE, not VM_SHARED: do_mmap() drops
    # VM_SHARED (keeping VM_MAYSHARE) for a MAP_SHARED mapping of a file
    # opened read-only, and the kernel accepts that mapping.
    missing = [f"VM_{n}" for n in ("MAYSHARE", "MIXEDMAP") if not vma.has(layout, n)]
    if not missing:
        return None
    return (
        f"P2PDMA page in a VMA without {' and '.join(missing)} (flags {_flags_text(vma.flags, layout)}); "
        f"expected VM_MAYSHARE|VM_MIXEDMAP: p2pmem_alloc_mmap() refuses private mappings and "
        f"vm_insert_page() sets VM_MIXEDMAP"
    )


def _applies_dax_bits(layout: Layout) -> Optional[str]:
    if layout.devmap_bit is None and not layout.dax_refcounted:
        return "layout has neither a devmap bit nor refcounted DAX pages (inconsistent layout)"
    return None


def _check_dax_leaf_bits(run: Run, layout: Layout) -> Optional[str]:
    leaf = run.first
    if not leaf.kind.maps_memory or run.page.kind not in _DAX:
        return None
    lvl, special, devmap = _lvl(leaf), _special(leaf, layout), leaf.devmap
    s_label, d_label = arch.special_label(layout), arch.devmap_label(layout)
    if not layout.dax_refcounted:
        # v6.1–v6.14: vmf_insert_mixed()/vmf_insert_pfn_pmd() with PFN_DEV|PFN_MAP:
        # pte_mkdevmap() = special|devmap; pmd/pud_mkdevmap() = devmap only.
        if leaf.level == Level.PTE:
            missing = [lb for lb, ok in ((s_label, special), (d_label, devmap)) if not ok]
            if not missing:
                return None
            return (
                f"{run.page.kind.value} PTE lacks {' and '.join(missing)}; on this kernel DAX PTEs are "
                f"pte_mkdevmap() = special+devmap (pages not refcounted by the mapping)"
            )
        wrong = ([] if devmap else [f"{d_label} is clear"]) + ([f"{s_label} is set"] if special else [])
        if not wrong:
            return None
        return (
            f"{run.page.kind.value} {lvl} leaf: {', '.join(wrong)}; expected {lvl.lower()}_mkdevmap() = "
            f"devmap without special"
        )
    # v6.15+ (7851bf649d42): refcounted folios, vmf_insert_page_mkwrite()/vmf_insert_folio_pXd().
    wrong = ([f"{s_label} is set"] if special else []) + ([f"{d_label} is set"] if devmap else [])
    if not wrong:
        return None
    return (
        f"{run.page.kind.value} {lvl} leaf: {', '.join(wrong)}; on this kernel DAX pages are refcounted "
        f"folios mapped by plain leaves (no special, no devmap)"
    )


def _check_dax_in_pfnmap(run: Run, layout: Layout) -> Optional[str]:
    leaf = run.first
    if not leaf.kind.maps_memory or run.page.kind not in _DAX or not run.vma.has(layout, "PFNMAP"):
        return None
    return (
        f"{run.page.kind.value} page mapped by a {_lvl(leaf)} in a VM_PFNMAP VMA; DAX mappings never set "
        f"VM_PFNMAP (fs/dax.c and drivers/dax/device.c add only VM_HUGEPAGE)"
    )


def _applies_devmap(layout: Layout) -> Optional[str]:
    if layout.devmap_bit is None:
        return "kernel has no devmap bit (removed by d438d2734170, v6.17)"
    return None


def _check_devmap_not_dax(run: Run, layout: Layout) -> Optional[str]:
    leaf, kind = run.first, run.page.kind
    if not leaf.kind.maps_memory or not leaf.devmap or kind in _DAX:
        return None
    return (
        f"{_lvl(leaf)} has {arch.devmap_label(layout)} set but maps a {_page_desc(run)} page; "
        f"expected devmap only on fsdax/devdax pages (pfn_t PFN_DEV|PFN_MAP)"
    )


def _check_devmap_pte_not_special(run: Run, layout: Layout) -> Optional[str]:
    leaf = run.first
    if leaf.level != Level.PTE or not leaf.kind.maps_memory or not leaf.devmap or leaf.special:
        return None
    if run.page.kind in _DAX:
        return None  # dax-leaf-bits reports DAX PTEs in full
    return (
        f"PTE has {arch.devmap_label(layout)} set but {arch.special_label(layout)} clear; "
        f"pte_mkdevmap() always sets both, so no kernel path made this entry"
    )


def _applies_device_private(layout: Layout) -> Optional[str]:
    if layout.swap.device_write is None:
        return "kernel built without CONFIG_DEVICE_PRIVATE (no device-private swap types)"
    return None


def _check_device_private_present(run: Run, layout: Layout) -> Optional[str]:
    leaf = run.first
    if not leaf.kind.maps_memory or run.page.kind != PageKind.DEVICE_PRIVATE:
        return None
    return (
        f"{leaf.kind.value} {_lvl(leaf)} maps a DEVICE_PRIVATE page; device-private memory is not CPU "
        f"addressable and may appear only in non-present device-private entries"
    )


def _check_device_private_entry_target(run: Run, layout: Layout) -> Optional[str]:
    leaf, kind = run.first, run.page.kind
    if leaf.kind != EntryKind.DEVICE_PRIVATE or kind == PageKind.DEVICE_PRIVATE:
        return None
    what = "System RAM" if kind == PageKind.RAM else _page_desc(run)
    return (
        f"device-private {_lvl(leaf)} entry carries a PFN that is {what}, not a MEMORY_DEVICE_PRIVATE "
        f"page; the offset must be page_to_pfn() of a device-private page"
    )


#: Where a migration entry may point: the source page being migrated. RAM, and
#: ZONE_DEVICE pages migrate_vma can move back to RAM: DEVICE_PRIVATE
#: (migrate_vma_collect_pmd() replaces a device-private entry with a migration
#: entry to the same PFN — the entry Jordan Niethe's unmerged series would give
#: a type of its own, kernel-facts §2.4) and DEVICE_COHERENT (anon pages
#: installed by migrate_vma, kernel-facts §5.f).
_MIGRATION_TARGETS = (PageKind.RAM, PageKind.DEVICE_PRIVATE, PageKind.DEVICE_COHERENT)


def _check_migration_target(run: Run, layout: Layout) -> Optional[str]:
    leaf, kind = run.first, run.page.kind
    if leaf.kind != EntryKind.MIGRATION or kind in _MIGRATION_TARGETS:
        return None
    return (
        f"migration {_lvl(leaf)} entry carries a PFN that is {_page_desc(run)}; expected the migrating "
        f"page: RAM, device-private or device-coherent"
    )


def _applies_device_exclusive(layout: Layout) -> Optional[str]:
    if layout.swap.device_exclusive_write is None:
        return "kernel built without CONFIG_DEVICE_PRIVATE (no device-exclusive swap types)"
    return None


#: What make_device_exclusive() (make_device_exclusive_range() before v6.15)
#: can take: any anonymous, non-hugetlb folio that GUP with FOLL_GET|FOLL_WRITE
#: returns. That is RAM and DEVICE_COHERENT memory (migrate_vma installs it as
#: anonymous folios, and GUP treats it as ordinary pages); a device-private
#: entry is faulted back to RAM first.
_EXCLUSIVE_TARGETS = (PageKind.RAM, PageKind.DEVICE_COHERENT)


def _check_device_exclusive_target(run: Run, layout: Layout) -> Optional[str]:
    leaf, kind = run.first, run.page.kind
    if leaf.kind != EntryKind.DEVICE_EXCLUSIVE or kind in _EXCLUSIVE_TARGETS:
        return None
    return (
        f"device-exclusive PTE entry carries a PFN that is {_page_desc(run)}; expected an anonymous "
        f"RAM or device-coherent page (make_device_exclusive() takes only anonymous folios)"
    )


def _check_device_coherent_mapping(run: Run, layout: Layout) -> Optional[str]:
    leaf, vma = run.first, run.vma
    if not leaf.kind.maps_memory or run.page.kind != PageKind.DEVICE_COHERENT:
        return None
    wrong = []
    if _special(leaf, layout):
        wrong.append(f"{arch.special_label(layout)} is set")
    if leaf.devmap:
        wrong.append(f"{arch.devmap_label(layout)} is set")
    if vma.has(layout, "MAYSHARE"):
        # migrate_vma moves only anonymous folios to device memory; a private
        # file mapping holds anonymous (COWed) folios too, a shared one none.
        wrong.append(f"the VMA is shared ({vma.file or 'anonymous shared memory'})")
    for flag in ("PFNMAP", "MIXEDMAP"):
        if vma.has(layout, flag):
            wrong.append(f"the VMA has VM_{flag}")
    if not wrong:
        return None
    return (
        f"DEVICE_COHERENT page mapped wrongly: {', '.join(wrong)}; expected a plain, refcounted anonymous "
        f"leaf in a private VMA (installed by migrate_vma)"
    )


def _check_garbage(run: Run, layout: Layout) -> Optional[str]:
    leaf = run.first
    if leaf.kind != EntryKind.GARBAGE:
        return None
    lvl = _lvl(leaf)
    if leaf.swap_type is None:
        return f"{lvl} entry is present but is not a valid leaf at this level"
    names, _ = arch.describe(leaf.raw, leaf.level, layout)
    return (
        f"non-present {lvl} entry ({names[0]}) matches no entry format this kernel defines at this "
        f"level (swap, migration, device-private/exclusive, hwpoison, PTE marker)"
    )


# ---------------------------------------------------------------------------
# VMA rules
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VmaSummary:
    """What one VMA's runs held, for VMA rules. Counts are leaves.

    ``present`` counts present and PROT_NONE leaves; ``special`` those of them
    with the special bit as the kernel reads it; ``kinds`` counts them per
    :class:`PageKind`; ``nonpresent`` counts the other non-empty leaves, of
    which ``garbage`` matched no encoding.
    """

    vma: Vma
    present: int = 0
    special: int = 0
    huge: int = 0
    nonpresent: int = 0
    garbage: int = 0
    kinds: Mapping[PageKind, int] = field(default_factory=dict)


class VmaTally:
    """Accumulates a :class:`VmaSummary` over a VMA's runs (O(1) memory)."""

    __slots__ = ("vma", "layout", "present", "special", "huge", "nonpresent", "garbage", "kinds")

    def __init__(self, vma: Vma, layout: Layout) -> None:
        self.vma, self.layout = vma, layout
        self.present = self.special = self.huge = self.nonpresent = self.garbage = 0
        self.kinds: Dict[PageKind, int] = {}

    def add(self, run: Run) -> None:
        leaf, n = run.first, run.count
        if leaf.kind.maps_memory:
            self.present += n
            if _special(leaf, self.layout):
                self.special += n
            if leaf.huge:
                self.huge += n
            kind = run.page.kind
            self.kinds[kind] = self.kinds.get(kind, 0) + n
        else:
            self.nonpresent += n
            if leaf.kind == EntryKind.GARBAGE:
                self.garbage += n

    def summary(self) -> VmaSummary:
        return VmaSummary(
            self.vma, self.present, self.special, self.huge, self.nonpresent, self.garbage, dict(self.kinds)
        )


def _check_mixedmap_all_struct_pages(summary: VmaSummary, layout: Layout) -> Optional[str]:
    """
    ZONE_DEVICE pages in a VM_MIXEDMAP VMA that maps nothing but struct pages.

    The thread's objection is to ZONE_DEVICE pages (those with a pgmap, which
    GUP must tell apart: P2PDMA, device-dax) put into VM_MIXEDMAP to get
    around finish_fault(). A VMA of ordinary pages is not that case:
    vm_insert_page(s)() sets VM_MIXEDMAP itself (v3.7, 4b6e1e37026e "mm: kill
    vma flag VM_INSERTPAGE"), so every AF_PACKET, io_uring or TCP-zerocopy ring
    and, on 7.x, every process's [vvar] (lib/vdso/datastore.c,
    _install_special_mapping(VM_MIXEDMAP|VM_IO)) has it by the mm core's
    choice, not a driver's.
    """
    if not summary.vma.has(layout, "MIXEDMAP") or summary.present == 0:
        return None
    if summary.kinds.get(PageKind.NO_MEMMAP, 0):
        return None
    if not any(kind.is_zone_device and n for kind, n in summary.kinds.items()):
        return None
    kinds = ", ".join(f"{k.value} {n}" for k, n in sorted(summary.kinds.items(), key=lambda kv: kv[0].value))
    return (
        f"VM_MIXEDMAP VMA maps ZONE_DEVICE pages and only pages with a struct page ({kinds}); VM_MIXEDMAP is meant "
        f"for VMAs that mix struct pages and pure PFNs (the merged P2PDMA mmap does this by design)"
    )


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------

RULES: Tuple[Rule, ...] = (
    Rule(
        id="pfnmap-not-special",
        title="Struct-page PFN in a VM_PFNMAP VMA without the special bit",
        severity=Severity.ERROR,
        thread=T_FRAME_VECTOR,
        quote="without the ability to mark special we can't block fast gup",
        kernels="all (PTE); PMD/PUD where pmd_special()/pud_special() exist (v6.12+)",
        check=_check_pfnmap_not_special,
        arches=(
            "x86-64 (_PAGE_SPECIAL, bit 9) and arm64 (PTE_SPECIAL, bit 56) alike; PUD leaves only on "
            "x86-64 (arm64 has no ARCH_SUPPORTS_PUD_PFNMAP)"
        ),
    ),
    Rule(
        id="huge-pfn-not-special",
        title="Huge PFN/IO leaf without the special bit (or with no special bit to set)",
        severity=Severity.ERROR,
        thread=T_FRAME_VECTOR,
        quote="It means ioremap can't create an IO page PUD, it has to be broken up.",
        kernels="all; before v6.12 no huge leaf may map PFNMAP/IO memory (0d979509539e, v5.16)",
        check=_check_huge_pfn_not_special,
        arches=(
            "x86-64: PMD and PUD leaves can be special (75182022a043, v6.12); arm64: PMD only "
            "(3e509c9b03f9, v6.12, selects ARCH_SUPPORTS_PMD_PFNMAP, not PUD): a huge PFN leaf there is"
            " a PMD"
        ),
    ),
    Rule(
        id="no-memmap-not-special",
        title="PTE maps a PFN without struct page but is not special",
        severity=Severity.ERROR,
        thread=T_FRAME_VECTOR,
        quote="will crash the kernel when it tries to convert a IO page into a struct page",
        kernels="all",
        check=_check_no_memmap_not_special,
    ),
    Rule(
        id="no-memmap-outside-pfnmap",
        title="PFN without struct page in a VMA with neither VM_PFNMAP nor VM_MIXEDMAP",
        severity=Severity.ERROR,
        thread=T_FRAME_VECTOR,
        quote="Putting non-struct page PTEs into a VMA without setting VM_PFNMAP just seems horribly wrong to me.",
        kernels="all",
        check=_check_no_memmap_outside_pfnmap,
    ),
    Rule(
        id="special-outside-pfnmap",
        title="Special leaf in a VMA with neither VM_PFNMAP nor VM_MIXEDMAP (\"Bad page map\")",
        severity=Severity.ERROR,
        thread=T_FSDAX_RDMA,
        quote="devmap has a struct page so it should be refcounted inside the VMA and "
        "that is the main thing that PAGE_SPECIAL disabled",
        kernels="all",
        check=_check_special_outside_pfnmap,
    ),
    Rule(
        id="mixedmap-all-struct-pages",
        title="ZONE_DEVICE pages in a VM_MIXEDMAP VMA whose present leaves all have struct pages",
        severity=Severity.INFO,
        thread=T_P2PDMA_MMAP,
        quote="VM_MIXEDMAP should not be set on VMAs that only contain struct pages. "
        "That is an abuse of what it is intended for.",
        kernels="all (the merged P2PDMA mmap, v6.2+, does this by design)",
        check=_check_mixedmap_all_struct_pages,
        scope="vma",
    ),
    Rule(
        id="p2pdma-leaf",
        title="P2PDMA page under a special, devmap or huge leaf in p2pmem's VMA, or not special in a BAR mmap",
        severity=Severity.ERROR,
        thread=T_P2P_VMA_2019,
        quote="That is why we use struct page for backing BARs in the existing P2P code.",
        kernels="v6.2+ (P2PDMA userspace mmap, 7e9c7ef83d78)",
        check=_check_p2pdma_leaf,
    ),
    Rule(
        id="p2pdma-vma-flags",
        title="P2PDMA page in a VMA without VM_MAYSHARE|VM_MIXEDMAP",
        severity=Severity.WARNING,
        thread=T_P2PDMA_MMAP,
        quote="Aside from enabling the special vmf_ API, it only controls some special behavior in vm_normal_page",
        kernels="v6.2+ (P2PDMA userspace mmap, 7e9c7ef83d78)",
        check=_check_p2pdma_vma_flags,
    ),
    Rule(
        id="dax-leaf-bits",
        title="fsdax/devdax leaf with the wrong special/devmap bits for this kernel",
        severity=Severity.ERROR,
        thread=T_FSDAX_RDMA,
        quote="pte_mkdevmap() will set both _PAGE_SPECIAL | PAGE_DEVMAP",
        kernels="v6.1–v6.14: PTE special+devmap, PMD/PUD devmap; v6.15+ (7851bf649d42): plain leaves",
        check=_check_dax_leaf_bits,
        applies=_applies_dax_bits,
        arches=(
            "x86-64 and arm64 alike: pte_mkdevmap() sets devmap and special (bits 58/9, 57/56), "
            "pmd_mkdevmap() devmap only; PUD DAX leaves only on x86-64 (arm64 has no "
            "HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD)"
        ),
    ),
    Rule(
        id="dax-in-pfnmap",
        title="fsdax/devdax page in a VM_PFNMAP VMA",
        severity=Severity.ERROR,
        thread=T_FSDAX_RDMA,
        quote="devmap has a struct page so it should be refcounted inside the VMA",
        kernels="all",
        check=_check_dax_in_pfnmap,
    ),
    Rule(
        id="devmap-not-dax",
        title="Devmap leaf whose page is not fsdax/devdax",
        severity=Severity.ERROR,
        thread=T_P2PDMA_MMAP,
        quote="I think DAX probably did it that way for the same reason you are doing it that way",
        kernels="v6.1–v6.16 (devmap bit removed in v6.17, d438d2734170)",
        check=_check_devmap_not_dax,
        applies=_applies_devmap,
        arches="x86-64 (_PAGE_DEVMAP, bit 58) and arm64 (PTE_DEVMAP, bit 57, 73b20c84d42d) until v6.17",
    ),
    Rule(
        id="devmap-pte-not-special",
        title="Devmap PTE without the special bit",
        severity=Severity.WARNING,
        thread=T_FSDAX_RDMA,
        quote="pte_mkdevmap() will set both _PAGE_SPECIAL | PAGE_DEVMAP",
        kernels="v6.1–v6.16",
        check=_check_devmap_pte_not_special,
        applies=_applies_devmap,
        arches="x86-64 and arm64 alike: on both pte_mkdevmap() sets special with devmap",
    ),
    Rule(
        id="device-private-present",
        title="DEVICE_PRIVATE page in a present leaf",
        severity=Severity.ERROR,
        thread=T_HMM_PRIVATE,
        quote="if the CPU actually tries to access it will cause a machine check",
        kernels="all",
        check=_check_device_private_present,
        arches=(
            "x86-64 and arm64 alike (test_hmm's pages sit above RAM on x86-64, at the top of the linear"
            " map on arm64)"
        ),
    ),
    Rule(
        id="device-private-entry-target",
        title="Device-private entry whose PFN is not a device-private page",
        severity=Severity.ERROR,
        thread=T_HMM_PRIVATE,
        quote="The PFN is used solely to get to/from a struct page (via pfn_to_page() or page_to_pfn()).",
        kernels="v6.1–v7.2 (offset is a PFN; re-check if device-private offsets land)",
        check=_check_device_private_entry_target,
        applies=_applies_device_private,
    ),
    Rule(
        id="migration-target",
        title="Migration entry whose PFN is not a migratable page",
        severity=Severity.ERROR,
        thread=T_HMM_PRIVATE,
        quote="The DEVICE_PRIVATE is just a non-usable proxy, like a swap entry, for where the real data is sitting.",
        kernels="all (with CONFIG_MIGRATION)",
        check=_check_migration_target,
        applies=lambda layout: None
        if layout.swap.migration_read is not None
        else "kernel built without CONFIG_MIGRATION",
    ),
    Rule(
        id="device-exclusive-target",
        title="Device-exclusive entry whose PFN is not an anonymous RAM or device-coherent page",
        severity=Severity.ERROR,
        thread=T_HMM_PRIVATE,
        quote="The DEVICE_PRIVATE is just a non-usable proxy, like a swap entry, for where the real data is sitting.",
        kernels="all (with CONFIG_DEVICE_PRIVATE)",
        check=_check_device_exclusive_target,
        applies=_applies_device_exclusive,
    ),
    Rule(
        id="device-coherent-mapping",
        title="DEVICE_COHERENT page not under a plain anonymous leaf",
        severity=Severity.ERROR,
        thread=T_FSDAX_RDMA,
        quote="devmap has a struct page so it should be refcounted inside the VMA",
        kernels="v6.0+ (MEMORY_DEVICE_COHERENT)",
        check=_check_device_coherent_mapping,
        applies=lambda layout: None
        if "COHERENT" in layout.memory_types
        else "kernel has no MEMORY_DEVICE_COHERENT",
    ),
    Rule(
        id="garbage-entry",
        title="Entry that matches no encoding of this kernel",
        severity=Severity.WARNING,
        thread=T_HMM_PRIVATE,
        quote="The DEVICE_PRIVATE is just a non-usable proxy, like a swap entry, for where the real data is sitting.",
        kernels="all",
        check=_check_garbage,
    ),
)

_BY_ID: Dict[str, Rule] = {r.id: r for r in RULES}
assert len(_BY_ID) == len(RULES), "duplicate rule id"


def rule_by_id(rule_id: str) -> Rule:
    """The rule called *rule_id*; KeyError if there is none."""
    return _BY_ID[rule_id]


_cache: List[object] = [None, None]  # [layout, (run rules, vma rules)], keyed by identity


def rules_for(layout: Layout) -> Tuple[Tuple[Rule, ...], Tuple[Rule, ...]]:
    """The run rules and the VMA rules that apply to *layout* (cached per layout object)."""
    if _cache[0] is not layout:
        usable = [r for r in RULES if r.applies(layout) is None]
        _cache[1] = (
            tuple(r for r in usable if r.scope == "run"),
            tuple(r for r in usable if r.scope == "vma"),
        )
        _cache[0] = layout
    return _cache[1]  # type: ignore[return-value]


def _evidence(leaf: Leaf, run: Run, layout: Layout) -> Tuple[Tuple[str, str], ...]:
    names, cache = arch.describe(leaf.raw, leaf.level, layout)
    ev = [("raw", f"{leaf.raw:#018x}"), ("bits", " ".join(names) + (f" [{cache}]" if cache else ""))]
    if leaf.pfn is not None:
        ev.append(("pfn", f"{leaf.pfn:#x}"))
    if run.page.pgmap is not None:
        ev.append(("pgmap", f"{run.page.pgmap:#x}"))
    if run.page.owner:
        ev.append(("owner", run.page.owner))
    if not run.page.memmap_readable:
        ev.append(("memmap", "unreadable; kind from the pgmap"))
    ev.append(("vm_flags", _flags_text(run.vma.flags, layout)))
    return tuple(ev)


#: ``(id(rules), scope)`` → ``(rules, its rules of that scope)`` for the
#: last few selections: an audit passes the same sequence for every run.
_scoped: Dict[Tuple[int, str], Tuple[object, Tuple[Rule, ...]]] = {}


def _select(layout: Layout, rules: Optional[Iterable[Rule]], scope: str) -> Iterable[Rule]:
    if rules is None:
        return rules_for(layout)[0 if scope == "run" else 1]
    hit = _scoped.get((id(rules), scope))
    if hit is not None and hit[0] is rules:
        return hit[1]
    chosen = tuple(r for r in rules if r.scope == scope)
    if isinstance(rules, tuple):  # immutable: the same object always holds the same rules
        if len(_scoped) > 64:
            _scoped.clear()
        _scoped[(id(rules), scope)] = (rules, chosen)
    return chosen


def evaluate_run(run: Run, layout: Layout, rules: Optional[Iterable[Rule]] = None) -> List[Finding]:
    """Every run rule's finding on *run* (usually none).

    *rules* defaults to every rule that applies to *layout*; a caller that
    selected rules itself passes them (VMA rules in it are skipped here).
    """
    found = []
    evidence = None
    for rule in _select(layout, rules, "run"):
        message = rule.check(run, layout)
        if message is None:
            continue
        if evidence is None:
            evidence = _evidence(run.first, run, layout)
        found.append(
            Finding(
                rule.id, rule.severity, run.vma, run.start, run.end, run.count, message,
                first=run.first, page=run.page, evidence=evidence,
            )
        )
    return found


def evaluate_vma(summary: VmaSummary, layout: Layout, rules: Optional[Iterable[Rule]] = None) -> List[Finding]:
    """Every VMA rule's finding on *summary*; *rules* as for :func:`evaluate_run`."""
    vma = summary.vma
    found = []
    for rule in _select(layout, rules, "vma"):
        message = rule.check(summary, layout)
        if message is not None:
            found.append(
                Finding(
                    rule.id, rule.severity, vma, vma.start, vma.end, summary.present, message,
                    evidence=(("vm_flags", _flags_text(vma.flags, layout)),),
                )
            )
    return found


def evaluate_runs(
    vma: Vma, runs: Iterable[Run], layout: Layout, rules: Optional[Iterable[Rule]] = None
) -> Iterator[Finding]:
    """One VMA: run rules on each run as it streams by, then the VMA rules."""
    if rules is not None:
        rules = tuple(rules)
    tally = VmaTally(vma, layout)
    for run in runs:
        tally.add(run)
        yield from evaluate_run(run, layout, rules)
    yield from evaluate_vma(tally.summary(), layout, rules)


def rule_rows(layout: Optional[Layout] = None) -> List[Dict[str, object]]:
    """The catalogue as dicts (what ``drgn-p2p rules --json`` prints).

    Given *layout*, each row says whether the rule applies to that kernel
    (``applicable``) and, when not, why (``not_applicable_because``); without
    one both are None.
    """
    rows: List[Dict[str, object]] = []
    for r in RULES:
        reason = r.applies(layout) if layout is not None else None
        rows.append(
            {
                "id": r.id,
                "severity": r.severity.label,
                "title": r.title,
                "thread": r.thread,
                "quote": r.quote,
                "kernels": r.kernels,
                "arches": r.arches,
                "applicable": None if layout is None else reason is None,
                "not_applicable_because": reason,
            }
        )
    return rows
