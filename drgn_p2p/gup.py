# SPDX-License-Identifier: GPL-2.0-or-later
"""
GUP prediction
--------------

What ``get_user_pages()`` and the kernel's users of it will do with a
mapping, predicted from the page tables alone: the leaf (level, entry kind,
special/devmap/write bits), the page kind behind it, the VMA (flags, vm_ops,
file) and the facts of the :class:`~drgn_p2p.records.Layout`. Like
:mod:`drgn_p2p.rules` this module reads no kernel and never looks at a
version number: every difference between kernels is a layout field.

Four GUP flavours, each asked for one page with ``FOLL_WRITE`` (what a DMA
into the page needs, as O_DIRECT reads, io_uring and RDMA ask):

* ``gup-fast``: the lockless walk of ``pin_user_pages_fast()``: ``take`` the
  page, ``fallback`` to the slow path, or ``oops``;
* ``pin``: the slow path, ``pin_user_pages()``;
* ``pin-longterm``: ``FOLL_LONGTERM`` (io_uring, RDMA, VFIO);
* ``pin-p2pdma``: ``FOLL_PCI_P2PDMA`` (the block layer on a queue that does P2P);

each slow flavour ``pin``, ``refuse`` (an errno), ``fault-first`` (the fault
handler must run: an empty, swapped, device-private or read-only leaf) or
``migrate-first`` (a FOLL_LONGTERM pin moves the page first); and eight
users, whose outcome is what their system call returns (``ok``, an errno
name) or ``oops``/``hang``. :func:`predict` is cheap: a prediction is
computed once per distinct (VMA shape, leaf shape, page kind) and cached.
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .arch import x86_64
from .records import NO_FOLIO_FACTS, EntryKind, FolioFacts, Layout, Leaf, Level, PageKind, Vma

__all__ = (
    "USERS", "FLAVOURS", "GupPrediction", "GupSegment", "VmaShape", "vma_shape", "predict", "segments",
    "predictions_dict",
)

USERS: Tuple[str, ...] = (
    "gup-fast",
    "pin",
    "pin-longterm",
    "pin-p2pdma",
    "odirect-read",
    "odirect-write",
    "odirect-nvme-read",
    "odirect-nvme-write",
    "io-uring-register",
    "ibv-reg-mr",
    "vmsplice",
    "futex",
    "process-vm-readv",
    "proc-pid-mem",
)
#: The rows that are GUP flavours rather than users.
FLAVOURS: Tuple[str, ...] = USERS[:4]


@dataclass(frozen=True)
class GupPrediction:
    """What one GUP flavour or user will do with one page of a mapping.

    ``outcome``: ``"ok"``, an errno name as userspace sees it (``"EFAULT"``),
    ``"oops"``, ``"hang"``, or for flavours ``"take"``/``"fallback"``
    (gup-fast) and ``"pin"``/``"refuse"``/``"fault-first"``/``"migrate-first"``;
    ``decided_by`` names the kernel function that decides; ``migrates`` is
    True when the leaf will change (device-private memory migrated back to
    RAM, device-coherent memory migrated out by FOLL_LONGTERM).
    """

    user: str
    outcome: str
    decided_by: str
    why: str
    migrates: bool = False

    def as_dict(self) -> Dict[str, object]:
        return {"outcome": self.outcome, "decided_by": self.decided_by, "why": self.why, "migrates": self.migrates}


@dataclass(frozen=True)
class GupSegment:
    """``[start, end)`` of one VMA over which every prediction is the same."""

    start: int
    end: int
    predictions: Tuple[GupPrediction, ...]
    #: Nothing is mapped there: the predictions are for what a fault maps.
    hole: bool = False

    def as_dict(self) -> Dict[str, object]:
        return {"start": hex(self.start), "end": hex(self.end), "predictions": predictions_dict(self.predictions)}


#: id of a cached predictions tuple → (the tuple, its JSON dict): segments share
#: the tuples :func:`predict` caches, so each is rendered once per audit.
_json_cache: Dict[int, Tuple[Tuple[GupPrediction, ...], Dict[str, object]]] = {}


def predictions_dict(predictions: Tuple[GupPrediction, ...]) -> Dict[str, object]:
    """``{user: {outcome, decided_by, why, migrates}}`` (the JSON ``predictions``)."""
    hit = _json_cache.get(id(predictions))
    if hit is None or hit[0] is not predictions:
        hit = _json_cache[id(predictions)] = (predictions, {p.user: p.as_dict() for p in predictions})
    return hit[1]


# ---------------------------------------------------------------------------
# What the predictor reads of a VMA
# ---------------------------------------------------------------------------

#: vm_ops of shmem (``vma_is_shmem()``); shmem_anon_vm_ops since v6.7.
_SHMEM_OPS = ("shmem_vm_ops", "shmem_anon_vm_ops")
#: The ``vm_ops->access`` functions (read from the kernel, :attr:`Vma.access`)
#: the prediction models: ``generic_access_phys()`` (/dev/mem, uio, sysfs
#: resource files behind kernfs), ``ttm_bo_vm_access()`` (TTM buffer objects)
#: and ``kernfs_vma_access()``, which calls the bin attribute's own access:
#: ``pci_phys_vm_ops`` for the sysfs ``resourceN``/``resourceN_wc`` files,
#: none for p2pmem's ``allocate``.
_ACCESS_MODELS = {"generic_access_phys": "phys", "ttm_bo_vm_access": "ttm"}
_PCI_RESOURCE = re.compile(r"/resource\d+(_wc)?$")
#: TTM drivers with ``bdev->funcs->access_memory()`` for VRAM (amdgpu).
_TTM_OWN_ACCESS_OPS = ("amdgpu_gem_vm_ops",)


#: The perf ring's vm_ops while it was faulted in (before 7.x remapped it at
#: mmap time): ``page_mkwrite = perf_mmap_fault``, which returns
#: VM_FAULT_SIGBUS for every page but the first (kernel/events/core.c, 6.1 and 6.12).
_PERF_OPS = "perf_mmap_vmops"

#: vm_ops of _install_special_mapping() (vDSO, vvar): kernel pages without a mapping.
_SPECIAL_MAPPING_OPS = ("special_mapping_vmops", "legacy_special_mapping_vmops")


@dataclass(frozen=True)
class VmaShape:
    """What the predictor reads of a ``struct vm_area_struct`` (hashable)."""

    flags: int
    ops: Optional[str]
    has_file: bool
    #: ``vma_is_fsdax()``: a DAX file (its vm_ops, or fsdax pages mapped in it).
    fsdax: bool
    #: The ``access`` op ``__access_remote_vm()`` falls back to: "phys"
    #: (generic_access_phys), "ttm", "ttm-own" (TTM with the driver's
    #: access_memory), "kernfs-none" (kernfs without one), None (no access),
    #: or the name of a function the prediction does not model.
    access: Optional[str]
    #: The VMA's first address, kept only where it decides: a perf ring,
    #: whose ``page_mkwrite`` (perf_mmap_fault()) allows writes to its first
    #: page (pgoff 0, the control page) alone.
    start: Optional[int] = None
    #: ``vm_ops->fault`` is set (or no vm_ops): without it a hole's fault is
    #: VM_FAULT_SIGBUS (``do_fault()``): vm_insert_page() users that insert
    #: every page at mmap or by their own call (tcp_vm_ops, packet_mmap_ops).
    fault: bool = True
    #: ``vma_needs_dirty_tracking()``, read by the walk (:attr:`Vma.dirty_tracking`).
    dirty_tracking: bool = False


def vma_shape(vma: Vma, fsdax_pages: bool = False) -> VmaShape:
    """The :class:`VmaShape` of *vma*; *fsdax_pages* when fsdax pages were seen in it."""
    ops = vma.ops
    access = _ACCESS_MODELS.get(vma.access or "", vma.access)
    if vma.access == "kernfs_vma_access":
        access = "phys" if vma.file and _PCI_RESOURCE.search(vma.file) else "kernfs-none"
    elif access == "ttm" and ops in _TTM_OWN_ACCESS_OPS:
        access = "ttm-own"
    start = vma.start if ops == _PERF_OPS else None
    return VmaShape(vma.flags, ops, vma.file is not None, fsdax_pages or ops == "ext4_dax_vm_ops", access, start,
                    vma.fault, vma.dirty_tracking)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    layout: Layout
    vma: VmaShape
    leaf: Optional[Leaf]
    kind: PageKind
    #: What the audit read of the page's folio (where pipeline.reads_folio() reads it).
    folio: FolioFacts = NO_FOLIO_FACTS

    def has(self, *names: str) -> bool:
        return any(self.vma.flags & self.layout.vm_flag(n) for n in names)

    @property
    def anon_vma(self) -> bool:
        """``vma_is_anonymous()``: no vm_ops."""
        return self.vma.ops is None

    def fn(self, key: str) -> str:
        """The name of a GUP-fast function in this kernel's source.

        23babe1934d7 ("mm/gup: consistently name GUP-fast functions", v6.10)
        renamed them; ``gup_fast_fallback`` (the old
        ``internal_get_user_pages_fast``) tells which names the kernel has.
        """
        new = self.layout.gup_fast_renamed
        return {
            "pte": "gup_fast_pte_range" if new else "gup_pte_range",
            "pmd": "gup_fast_pmd_leaf" if new else "gup_huge_pmd",
            "pud": "gup_fast_pud_leaf" if new else "gup_huge_pud",
            "grab": "try_grab_folio_fast" if new else "try_grab_folio",
            "allowed": "gup_fast_folio_allowed",
        }[key]


# A step's result: (outcome, decided_by, why, migrates, faulted).
_Res = Tuple[str, str, str, bool, bool]


def _special(ctx: _Ctx) -> bool:
    """The special bit as the kernel reads it at the leaf's level."""
    leaf, layout = ctx.leaf, ctx.layout
    assert leaf is not None
    if leaf.level == Level.PTE:
        return leaf.special
    if leaf.level == Level.PMD:
        return leaf.special and layout.has_pmd_special
    return leaf.special and layout.has_pud_special


def _above_memmap(ctx: _Ctx) -> bool:
    """The leaf's PFN is above ``highest_memmap_pfn`` (unknown: False)."""
    top, leaf = ctx.layout.highest_memmap_pfn, ctx.leaf
    return top is not None and leaf is not None and leaf.pfn is not None and leaf.pfn > top


def _devmap(ctx: _Ctx) -> bool:
    return ctx.leaf is not None and ctx.leaf.devmap and ctx.layout.devmap_bit is not None


def _lvl_fn(ctx: _Ctx) -> str:
    assert ctx.leaf is not None
    return ctx.fn({Level.PTE: "pte", Level.PMD: "pmd"}.get(ctx.leaf.level, "pud"))


def _fast(ctx: _Ctx, write: bool, longterm: bool, p2p: bool) -> Tuple[str, str, str]:
    """The lockless walk of ``pin_user_pages_fast()``: take, fallback or oops."""
    leaf, kind = ctx.leaf, ctx.kind
    if leaf is None:
        return "fallback", ctx.fn("pte"), "nothing is mapped: the slow path faults it in"
    fn = _lvl_fn(ctx)
    if leaf.kind == EntryKind.PROTNONE:
        return "fallback", fn, "PROT_NONE/NUMA-hinting entry: pte_protnone() sends it to the slow path"
    if not leaf.kind.maps_memory:
        return "fallback", fn, f"{leaf.kind.value} entry is not present"
    if write and not leaf.writable:
        return "fallback", fn, "read-only leaf and FOLL_WRITE: pte_access_permitted() fails"
    if _devmap(ctx):
        # v6.1–v6.16: the devmap branch comes before the special test.
        if longterm:
            return "fallback", fn, "devmap leaf and FOLL_LONGTERM: never taken locklessly"
        if not kind.is_zone_device:
            return "fallback", fn, "devmap leaf but get_dev_pagemap() finds no pgmap for the PFN"
    elif _special(ctx):
        return "fallback", fn, f"special {leaf.level.label} leaf: only the slow path may look at the VMA"
    grab = ctx.fn("grab")
    if not kind.has_memmap:
        # Seen on 7.2: "BUG: unable to handle page fault" at try_grab_folio_fast+0x1dd.
        return "oops", grab, (
            f"non-special {leaf.level.label} leaf of a PFN without struct page: {fn}() passes "
            f"{leaf.level.label}_page(), which points into memmap that does not exist, to {grab}()"
        )
    if ctx.folio.unreferenced:
        return "fallback", grab, "the page's refcount is 0: folio_ref_try_add() fails"
    if longterm and kind == PageKind.DEVICE_COHERENT:
        return "fallback", grab, "folio_is_longterm_pinnable() is false for device-coherent memory"
    if ctx.layout.gup_p2pdma_gate and kind == PageKind.P2PDMA and not p2p:
        return "fallback", grab, "P2PDMA page without FOLL_PCI_P2PDMA"
    if ctx.vma.ops == "secretmem_vm_ops":
        return "fallback", grab, "secretmem folio"
    if ctx.layout.gup_fast_secretmem_mapping and leaf.level == Level.PTE and _folio_mapping(ctx) == "none":
        return "fallback", ctx.fn("allowed"), (
            "order-0 folio with a NULL mapping: gup_fast_folio_allowed() cannot rule out secretmem")
    if ctx.layout.gup_longterm_file_check and longterm and write:
        mapping = _folio_mapping(ctx)
        if mapping not in ("anon", "shmem", "hugetlb"):
            why = "folio->mapping is NULL" if mapping == "none" else "file-backed folio"
            return "fallback", ctx.fn("allowed"), f"{why} and FOLL_LONGTERM|FOLL_WRITE: the slow path decides"
    return "take", grab, f"{kind.value} page grabbed without the mmap lock"


def _folio_mapping(ctx: _Ctx) -> str:
    """What ``folio->mapping`` of the page is: anon, shmem, hugetlb, file or none."""
    kind = ctx.kind
    if ctx.folio.unmapped:
        return "none"  # read from the folio
    if kind in (PageKind.ZERO_PAGE, PageKind.HUGE_ZERO, PageKind.P2PDMA):
        return "none"  # the zero page; vm_insert_page() sets no mapping
    if kind in (PageKind.DEVICE_COHERENT, PageKind.DEVICE_PRIVATE):
        return "anon"  # migrate_vma works on anonymous memory only
    if kind in (PageKind.FSDAX, PageKind.DEVDAX, PageKind.DEVICE_GENERIC):
        return "file"  # dax_associate_entry()/dax_set_mapping()
    if ctx.has("HUGETLB"):
        return "hugetlb"
    if ctx.has("MIXEDMAP", "PFNMAP") or ctx.vma.ops in _SPECIAL_MAPPING_OPS:
        return "none"  # driver pages (vm_insert_page()/remap_pfn_range()), the vDSO
    if ctx.anon_vma:
        return "anon"
    if ctx.vma.ops in _SHMEM_OPS:
        return "shmem"
    if ctx.vma.ops == "fb_deferred_io_vm_ops" and not ctx.layout.fb_defio_page_mapping:
        return "none"  # vmalloc'ed framebuffer pages, write-protected through the file's mapping
    if not ctx.has("MAYSHARE") and ctx.has("WRITE"):
        return "anon"  # a private file mapping written to holds anonymous COW pages
    return "file"


def _check_vma_flags(ctx: _Ctx, write: bool, longterm: bool, pin: bool, force: bool) -> Optional[_Res]:
    """``check_vma_flags()``: the VMA-level refusals of the slow path."""
    fn = "check_vma_flags"
    if ctx.has("IO", "PFNMAP"):
        return "EFAULT", fn, "VM_IO|VM_PFNMAP: the slow path never takes pages of a PFN mapping", False, False
    if longterm and ctx.vma.fsdax:
        return "EOPNOTSUPP", fn, "FOLL_LONGTERM on a filesystem-DAX VMA (vma_is_fsdax())", False, False
    if ctx.vma.ops == "secretmem_vm_ops":
        return "EFAULT", fn, "secretmem VMA", False, False
    if write:
        if (ctx.layout.gup_longterm_file_check and pin and longterm and not ctx.anon_vma
                and ctx.vma.dirty_tracking):
            return "EFAULT", fn, (
                "writable_file_mapping_allowed(): a FOLL_LONGTERM write pin of a shared file mapping "
                f"that needs dirty tracking ({ctx.vma.ops})"
            ), False, False
        if not ctx.has("WRITE"):
            if not force:
                return "EFAULT", fn, "FOLL_WRITE on a VMA without VM_WRITE", False, False
            if ctx.has("HUGETLB"):
                return "EFAULT", fn, "FOLL_FORCE|FOLL_WRITE on hugetlb", False, False
            if ctx.has("SHARED") or not ctx.has("MAYWRITE"):
                return "EFAULT", fn, "FOLL_FORCE|FOLL_WRITE on a VMA that is not a COW mapping", False, False
    elif not ctx.has("READ"):
        if not force:
            return "EFAULT", fn, "VMA without VM_READ (PROT_NONE)", False, False
        if not ctx.has("MAYREAD"):
            return "EFAULT", fn, "FOLL_FORCE on a VMA without VM_MAYREAD", False, False
    return None


def _marker(ctx: _Ctx, write: bool) -> _Res:
    leaf, markers = ctx.leaf, ctx.layout.pte_markers
    assert leaf is not None
    offset = leaf.swap_offset or 0
    if offset & markers.get("guard", 0):
        return "EFAULT", "handle_pte_marker", "guard region marker: the fault is VM_FAULT_SIGSEGV", False, True
    if offset & (markers.get("poisoned", 0) | markers.get("swapin-error", 0)):
        return "EFAULT", "handle_pte_marker", "poisoned marker: VM_FAULT_HWPOISON becomes -EFAULT", False, True
    if write:
        return "hang", "handle_userfault", (
            "uffd-wp marker and a write: the fault waits for the userfaultfd handler to resolve it"
        ), False, True
    return "ok", "do_pte_missing", "uffd-wp marker on a read: the fault maps the page read-only", False, True


def _nonpresent(ctx: _Ctx, write: bool, longterm: bool, pin: bool, p2p: bool) -> _Res:
    """A non-present leaf: GUP faults (``faultin_page()`` → ``handle_mm_fault()``)."""
    leaf, kind = ctx.leaf, ctx.kind
    assert leaf is not None
    k = leaf.kind
    if k == EntryKind.SWAP:
        return "ok", "do_swap_page", "swap entry: the fault swaps the page in", False, True
    if k == EntryKind.DEVICE_PRIVATE:
        if kind != PageKind.DEVICE_PRIVATE:
            return "oops", "do_swap_page", (
                f"device-private entry whose PFN is a {kind.value} page: the fault calls the "
                "migrate_to_ram() of a pgmap that page does not have"
            ), False, True
        return "ok", "do_swap_page", (
            "device-private entry: the fault calls pgmap->ops->migrate_to_ram() and GUP pins the RAM copy"
        ), True, True
    if k == EntryKind.MIGRATION:
        if kind.is_zone_device and kind not in (PageKind.DEVICE_PRIVATE, PageKind.DEVICE_COHERENT):
            return "hang", "migration_entry_wait", (
                f"migration entry to a {kind.value} page that no migration holds locked: "
                "GUP faults, finds the entry again and retries"
            ), False, True
        return "ok", "migration_entry_wait", "migration entry: the fault waits for the migration to end", False, True
    if k == EntryKind.DEVICE_EXCLUSIVE:
        # The fault (remove_device_exclusive_entry()) restores a present leaf of the page.
        restored = Leaf(leaf.va, leaf.level, leaf.raw, EntryKind.PRESENT, leaf.pfn, writable=True)
        res = _present(_Ctx(ctx.layout, ctx.vma, restored, kind), write, longterm, pin, p2p)
        return res[0], res[1], f"device-exclusive entry restored by the fault, then: {res[2]}", res[3], True
    if k == EntryKind.HWPOISON:
        return "EFAULT", "vm_fault_to_errno", "hwpoison entry: VM_FAULT_HWPOISON without FOLL_HWPOISON", False, True
    if k == EntryKind.MARKER:
        return _marker(ctx, write)
    if k == EntryKind.SWAPIN_ERROR:
        return "EFAULT", "do_swap_page", "swap-in error entry: VM_FAULT_SIGBUS", False, True
    if leaf.swap_type is not None and leaf.swap_type == ctx.layout.swap.pte_marker:
        return "EFAULT", "handle_pte_marker", "PTE marker with unknown bits: VM_FAULT_SIGBUS", False, True
    return "EFAULT", "do_swap_page", f"{k.value} entry matches no format: the fault reports a bad swap entry", False, True


def _present(ctx: _Ctx, write: bool, longterm: bool, pin: bool, p2p: bool) -> _Res:
    """``follow_page_mask()`` on a present leaf, then the FOLL_LONGTERM check."""
    leaf, kind, layout = ctx.leaf, ctx.kind, ctx.layout
    assert leaf is not None
    faulted = False
    if leaf.kind == EntryKind.PROTNONE:
        faulted = True  # NUMA hinting fault (PROT_NONE VMAs were refused unless FOLL_FORCE)
    page = True
    vnp = "vm_normal_page"
    if _special(ctx):
        if ctx.has("PFNMAP", "MIXEDMAP") or kind in (PageKind.ZERO_PAGE, PageKind.HUGE_ZERO):
            page = False
        elif _devmap(ctx):
            page = False  # "Legacy ZONE_DEVICE pages that set pte_devmap()"
        else:
            return "EEXIST", "follow_pfn_pte", (
                "special leaf in a VMA with neither VM_PFNMAP nor VM_MIXEDMAP: vm_normal_page() reports "
                "\"Bad page map\" and returns no page"
            ), False, faulted
    elif not kind.has_memmap:
        if _above_memmap(ctx):
            return "EEXIST", "follow_pfn_pte", (
                "non-special leaf of a PFN above highest_memmap_pfn: vm_normal_page() reports \"Bad page map\" "
                "and returns no page"
            ), False, faulted
        return "oops", vnp, (
            "non-special leaf of a PFN without struct page below highest_memmap_pfn: vm_normal_page() "
            "returns pfn_to_page() of memmap that does not exist"
        ), False, faulted
    if write and not leaf.writable:
        if ctx.has("UFFD_WP"):
            return "hang", "handle_userfault", (
                "read-only leaf in a userfaultfd write-protected VMA: the write fault waits for the "
                "userfaultfd handler"
            ), False, True
        if ctx.vma.ops == _PERF_OPS and ctx.vma.start is not None and leaf.va != ctx.vma.start:
            return "EFAULT", "perf_mmap_fault", (
                "read-only perf ring data page and FOLL_WRITE: page_mkwrite returns VM_FAULT_SIGBUS "
                "for every page but the first"), False, True
        faulted = True  # can_follow_write_pte() fails: write fault (COW, unshare, dirty tracking)
        if kind in (PageKind.ZERO_PAGE, PageKind.HUGE_ZERO):
            kind, page = PageKind.RAM, True  # the write fault replaces the zero page with an anonymous page
    if not page:
        if _devmap(ctx):
            if not kind.is_zone_device:
                return "hang", "follow_page_pte", (
                    "devmap leaf whose PFN has no pgmap: get_dev_pagemap() fails, the fault finds the "
                    "leaf present and GUP retries"
                ), False, faulted
        elif kind not in (PageKind.ZERO_PAGE, PageKind.HUGE_ZERO):
            return "EEXIST", "follow_pfn_pte", (
                "special leaf in a VM_MIXEDMAP VMA: a PFN without a page GUP could return"
            ), False, faulted
    if ctx.folio.unreferenced:
        return "ENOMEM", "try_grab_folio", (
            "the page's refcount is 0: WARN_ON_ONCE(folio_ref_count(folio) <= 0), -ENOMEM"), False, faulted
    if layout.gup_p2pdma_gate and kind == PageKind.P2PDMA and not p2p:
        return "EREMOTEIO", "try_grab_folio", "P2PDMA page without FOLL_PCI_P2PDMA", False, faulted
    if longterm and kind == PageKind.DEVICE_COHERENT:
        return "ok", "folio_is_longterm_pinnable", (
            "device-coherent memory must stay evictable: FOLL_LONGTERM migrates it to RAM first"
        ), True, faulted
    what = {
        PageKind.ZERO_PAGE: "the shared zero page",
        PageKind.HUGE_ZERO: "the huge zero page",
    }.get(kind, f"{kind.value} page")
    return "ok", "follow_page_pte" if leaf.level == Level.PTE else "follow_page_mask", f"{what} pinned", False, faulted


def _slow(ctx: _Ctx, write: bool, longterm: bool = False, pin: bool = True, p2p: bool = False,
          force: bool = False) -> _Res:
    """The slow path, ``__get_user_pages()`` (and ``__gup_longterm_locked()``)."""
    refused = _check_vma_flags(ctx, write, longterm, pin, force)
    if refused is not None:
        return refused
    leaf = ctx.leaf
    if leaf is None:
        if ctx.kind == PageKind.NONE and not ctx.vma.fault:
            return "EFAULT", "do_fault", (
                f"nothing is mapped and {ctx.vma.ops} has no fault handler: VM_FAULT_SIGBUS"), False, False
        if ctx.kind == PageKind.NONE:
            return "ok", "handle_mm_fault", "nothing is mapped: the fault populates it, then GUP pins it", False, True
        # A hole in a VMA of device pages: the fault inserts a page of the same kind.
        filled = Leaf(0, Level.PTE, 0, EntryKind.PRESENT, None, special=False, writable=True)
        res = _present(_Ctx(ctx.layout, ctx.vma, filled, ctx.kind), write, longterm, pin, p2p)
        return res[0], res[1], f"the fault maps a {ctx.kind.value} page, then: {res[2]}", res[3], True
    if leaf.kind.maps_memory:
        return _present(ctx, write, longterm, pin, p2p)
    return _nonpresent(ctx, write, longterm, pin, p2p)


def _via_fast(ctx: _Ctx, write: bool, longterm: bool = False, p2p: bool = False) -> _Res:
    """A ``*_user_pages_fast()`` caller: GUP-fast, then the slow path for what it left."""
    outcome, fn, why = _fast(ctx, write, longterm, p2p)
    if outcome == "take":
        return "ok", fn, f"GUP-fast takes it: {why}", False, False
    if outcome == "oops":
        return "oops", fn, f"GUP-fast: {why}", False, False
    return _slow(ctx, write, longterm, pin=True, p2p=p2p)


def _flavour(user: str, res: _Res, longterm: bool = False) -> GupPrediction:
    outcome, fn, why, migrates, faulted = res
    if outcome == "ok":
        if migrates and longterm and not faulted:
            outcome = "migrate-first"
        elif faulted:
            outcome = "fault-first"
        else:
            outcome = "pin"
    elif outcome not in ("oops", "hang"):
        why = f"-{outcome}: {why}"
        outcome = "refuse"
    return GupPrediction(user, outcome, fn, why, migrates)


def _user(user: str, res: _Res) -> GupPrediction:
    outcome, fn, why, migrates, _ = res
    return GupPrediction(user, outcome, fn, why, migrates)


def _io_uring(ctx: _Ctx) -> _Res:
    if not ctx.layout.gup_longterm_file_check:
        # io_pin_pages() before edd478269640 (v6.5) pins with pin_user_pages()
        # and then refuses file-backed VMAs other than shmem and hugetlbfs.
        res = _slow(ctx, True, longterm=True)
        if res[0] == "ok" and ctx.vma.has_file and ctx.vma.ops not in _SHMEM_OPS and not ctx.has("HUGETLB"):
            return "EOPNOTSUPP", "io_pin_pages", "file-backed VMA that is neither shmem nor hugetlbfs", res[3], res[4]
        return res
    return _via_fast(ctx, True, longterm=True)


def _futex(ctx: _Ctx) -> _Res:
    """``get_futex_key()`` for a shared FUTEX_WAIT, then the value compare (-EAGAIN)."""
    res = _via_fast(ctx, True)
    ro = False
    if res[0] == "EFAULT":
        # "If write access is not required (eg. FUTEX_WAIT), try and get read-only access."
        res, ro = _via_fast(ctx, False), True
    if res[0] != "ok":
        return res
    mapping = _folio_mapping(ctx)
    if ctx.kind in (PageKind.ZERO_PAGE, PageKind.HUGE_ZERO) and not ro and res[4]:
        mapping = "anon"  # the write fault replaced the zero page
    if ctx.kind == PageKind.NONE and ctx.leaf is None:
        mapping = "anon" if ctx.anon_vma or not ctx.has("MAYSHARE") else _folio_mapping(ctx)
    if mapping == "none":
        return "EFAULT", "get_futex_key", "folio->mapping is NULL (zero page or driver page)", res[3], res[4]
    if mapping == "anon" and ro:
        return "EFAULT", "get_futex_key", "read-only anonymous page: a futex there can never change", res[3], res[4]
    return "EAGAIN", "futex_wait_setup", f"key resolved ({mapping}); the value differs", res[3], res[4]


def _proc_mem(ctx: _Ctx) -> _Res:
    """``mem_rw()`` → ``access_remote_vm()``: GUP (with FOLL_FORCE when
    ``proc_mem_foll_force()`` says so; with "ptrace", for a reader that is
    not the process's tracer: none), else ``vm_ops->access``."""
    res = _slow(ctx, False, pin=False, force=ctx.layout.proc_mem_force == "always")
    if res[0] in ("ok", "oops", "hang"):
        return res
    access = ctx.vma.access
    if access == "phys":
        low = ctx.leaf is not None and ctx.leaf.pfn is not None and ctx.leaf.pfn < x86_64.RESERVED_LOW_PFNS
        if ctx.kind == PageKind.RAM and low and ctx.layout.arch == "x86_64":
            return "ok", "generic_access_phys", (
                f"GUP fails ({res[0]}); the first MiB is reserved (PageReserved), which x86 ioremap "
                "maps: __ioremap_check_ram() refuses only unreserved System RAM"), False, False
        if ctx.kind == PageKind.RAM:
            return "EIO", "generic_access_phys", (
                "GUP fails, generic_access_phys() ioremap_prot()s System RAM, which x86 ioremap refuses"
            ), False, False
        return "ok", "generic_access_phys", f"GUP fails ({res[0]}); vm_ops->access maps the PFN with ioremap_prot()", False, False
    if access == "ttm-own":
        return "ok", "ttm_bo_vm_access", f"GUP fails ({res[0]}); the driver's access_memory() copies VRAM", False, False
    if access == "ttm":
        if ctx.kind == PageKind.NO_MEMMAP:
            return "EIO", "ttm_bo_vm_access", (
                f"GUP fails ({res[0]}); a buffer object in VRAM and no bdev->funcs->access_memory(): -EIO"
            ), False, False
        return "ok", "ttm_bo_vm_access", f"GUP fails ({res[0]}); TTM kmaps the system/TT buffer object", False, False
    if access not in (None, "kernfs-none"):
        return "ok", access, f"GUP fails ({res[0]}); vm_ops->access ({access}) copies it", False, False
    why = "kernfs_vma_access() has no bin-attribute access" if access == "kernfs-none" else "no vm_ops->access"
    return "EIO", "__access_remote_vm", f"GUP fails ({res[0]}) and {why}: mem_rw() copied nothing", False, False


def _predict(ctx: _Ctx) -> Tuple[GupPrediction, ...]:
    p2p_gate = ctx.layout.gup_p2pdma_gate
    fast = _fast(ctx, True, False, False)
    p2p_res = _slow(ctx, True, p2p=True)
    if not p2p_gate:
        p2p_res = p2p_res[:2] + (f"{p2p_res[2]} (no FOLL_PCI_P2PDMA on this kernel: no P2PDMA gate)",) + p2p_res[3:]
    pvm = _slow(ctx, False)
    if pvm[0] not in ("ok", "oops", "hang"):
        pvm = ("EFAULT", "process_vm_rw_single_vec", f"pin_user_pages_remote() fails ({pvm[0]}: {pvm[2]})", pvm[3], pvm[4])
    return (
        GupPrediction("gup-fast", fast[0], fast[1], fast[2], False),
        _flavour("pin", _slow(ctx, True)),
        _flavour("pin-longterm", _slow(ctx, True, longterm=True), longterm=True),
        _flavour("pin-p2pdma", p2p_res),
        # O_DIRECT: bio_iov_iter_get_pages() → iov_iter_get_pages2() (GET) or
        # iov_iter_extract_pages() (PIN); FOLL_PCI_P2PDMA only for a queue
        # with P2P support, which virtio-blk is not.
        _user("odirect-read", _via_fast(ctx, True)),
        _user("odirect-write", _via_fast(ctx, False)),
        # The same on a queue that allows P2PDMA (NVMe: nvme_alloc_ns() sets QUEUE_FLAG_PCI_P2PDMA,
        # BLK_FEAT_PCI_P2PDMA since 6.11, when the controller's DMA can reach peer memory):
        # bio_iov_iter_get_pages() adds ITER_ALLOW_P2PDMA, GUP runs with FOLL_PCI_P2PDMA (v6.2,
        # "block: set FOLL_PCI_P2PDMA in __bio_iov_iter_get_pages()", the series of 4293399dc6ed).
        _user("odirect-nvme-read", _via_fast(ctx, True, p2p=True)),
        _user("odirect-nvme-write", _via_fast(ctx, False, p2p=True)),
        _user("io-uring-register", _io_uring(ctx)),
        # ib_umem_get(): pin_user_pages_fast(FOLL_LONGTERM | FOLL_WRITE).
        _user("ibv-reg-mr", _via_fast(ctx, True, longterm=True)),
        # vmsplice_to_pipe() → iov_iter_get_pages2(): get_user_pages_fast(0).
        _user("vmsplice", _via_fast(ctx, False)),
        _user("futex", _futex(ctx)),
        _user("process-vm-readv", pvm),
        _user("proc-pid-mem", _proc_mem(ctx)),
    )


_cache: Dict[object, Tuple[GupPrediction, ...]] = {}
_cache_layout: List[object] = [None]


def predict(layout: Layout, vma: VmaShape, leaf: Optional[Leaf], kind: PageKind,
            folio: FolioFacts = NO_FOLIO_FACTS) -> Tuple[GupPrediction, ...]:
    """Predictions for every entry of :data:`USERS`, in that order.

    *leaf* ``None`` is an address nothing maps: *kind* is then the page kind
    the fault would insert (``PageKind.NONE`` for ordinary memory).
    *folio*: what was read of the leaf's folio (a device page's refcount, mapping).
    """
    if _cache_layout[0] is not layout:
        _cache.clear()
        _json_cache.clear()
        _cache_layout[0] = layout
    sig = (vma, kind) if leaf is None else (
        vma, kind, leaf.level, leaf.kind, leaf.special, leaf.devmap, leaf.writable,
        leaf.swap_offset if leaf.kind == EntryKind.MARKER else None,
        kind == PageKind.NO_MEMMAP and _above_memmap(_Ctx(layout, vma, leaf, kind)),
        leaf.pfn is not None and leaf.pfn < x86_64.RESERVED_LOW_PFNS,
        vma.start is not None and leaf.va == vma.start, folio,
    )
    hit = _cache.get(sig)
    if hit is None:
        hit = _cache[sig] = _predict(_Ctx(layout, vma, leaf, kind, folio))
    return hit


def hole_kind(kinds: Sequence[PageKind]) -> PageKind:
    """The kind of page a fault inserts into a hole of a VMA whose present pages are *kinds*."""
    for kind in (PageKind.FSDAX, PageKind.DEVDAX, PageKind.P2PDMA):
        if kind in kinds:
            return kind
    return PageKind.NONE


def segments(
    layout: Layout,
    vma: VmaShape,
    start: int,
    end: int,
    runs: Sequence[Tuple[int, int, Optional[Leaf], PageKind, FolioFacts]],
) -> Tuple[GupSegment, ...]:
    """``[start, end)`` cut into segments of equal predictions.

    *runs* are ``(start, end, first leaf, page kind, folio facts)`` in
    ascending order (the facts read of the first leaf's folio);
    the gaps between them are predicted as holes that a fault fills.
    """
    fill = hole_kind([k for _, _, leaf, k, _ in runs if leaf is not None and leaf.kind.maps_memory])
    out: List[GupSegment] = []

    def add(s: int, e: int, preds: Tuple[GupPrediction, ...], hole: bool = False) -> None:
        if s >= e:
            return
        last = out[-1] if out else None
        if last and last.end == s and last.hole == hole and (last.predictions is preds or last.predictions == preds):
            out[-1] = GupSegment(last.start, e, preds, hole)
        else:
            out.append(GupSegment(s, e, preds, hole))

    at = start
    for s, e, leaf, kind, facts in runs:
        s, e = max(s, start), min(e, end)
        if s >= e:
            continue
        if s > at:
            add(at, s, predict(layout, vma, None, fill), True)
        add(s, e, predict(layout, vma, leaf, kind, facts))
        at = e
    if at < end:
        add(at, end, predict(layout, vma, None, fill), True)
    return tuple(out)
