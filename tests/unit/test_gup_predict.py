# SPDX-License-Identifier: GPL-2.0-or-later
"""The GUP prediction table, per lab kernel (Debian 6.1, 6.12, 7.2 layouts).

Each expectation names the kernel logic it comes from (the function in
mm/gup.c, mm/memory.c, io_uring/rsrc.c, kernel/futex/core.c, fs/proc/base.c
… of that release); nothing here is read from a lab run.
"""

import dataclasses
import json
from typing import Dict, Optional, Tuple

import pytest
from report_checkers import check_audit_json

from drgn_p2p import layout as layout_stage
from drgn_p2p.gup import USERS, GupPrediction, predict, segments, vma_shape
from drgn_p2p.pipeline import AuditResult, VmaReport
from drgn_p2p.records import NO_FOLIO_FACTS, EntryKind, FolioFacts, Layout, Leaf, Level, PageKind as K, Vma
from drgn_p2p.report import audit_json, gup_summary

from .layouts import L61, L612, L72, leaf, make_vma, vm
from .test_layout_learn import _program

ALL = (L61, L612, L72)
RW = ("READ", "WRITE", "MAYREAD", "MAYWRITE")
SHARED = RW + ("SHARED", "MAYSHARE")
BAR_FILE = "/sys/devices/pci0000:00/0000:00:04.0/resource2"
P2P_FILE = "/sys/devices/pci0000:00/0000:00:05.0/p2pmem/allocate"


#: The hooks of the kernel's vm_operations_struct of each ops the tests use, as the walk reads
#: them: (``access``, ``fault`` set, ``page_mkwrite``/``pfn_mkwrite`` set). From the sources of
#: 6.1 to 7.2: drivers/char/mem.c, fs/kernfs/file.c, drivers/uio/uio.c (access only, with
#: CONFIG_HAVE_IOREMAP_PROT), drivers/gpu/drm/ttm/ttm_bo_vm.c, net/ipv4/tcp.c (``tcp_vm_ops = {}``),
#: net/packet/af_packet.c (open/close), kernel/events/core.c (6.1, 6.12: ``page_mkwrite =
#: perf_mmap_fault``), drivers/video/fbdev/core/fb_defio.c, fs/ext4/file.c, drivers/dax/device.c,
#: mm/mmap.c (special_mapping_vmops), mm/secretmem.c, mm/shmem.c.
KERNEL_HOOKS = {
    "mmap_mem_ops": ("generic_access_phys", False, False),
    "kernfs_vm_ops": ("kernfs_vma_access", True, True),
    "uio_physical_vm_ops": ("generic_access_phys", False, False),
    "ttm_bo_vm_ops": ("ttm_bo_vm_access", True, False),
    "tcp_vm_ops": (None, False, False),
    "packet_mmap_ops": (None, False, False),
    "perf_mmap_vmops": (None, True, True),
    "fb_deferred_io_vm_ops": (None, True, True),
    "ext4_file_vm_ops": (None, True, True),
    "ext4_dax_vm_ops": (None, True, True),
    "dax_vm_ops": (None, True, False),
    "special_mapping_vmops": (None, True, False),
    "secretmem_vm_ops": (None, True, False),
    "shmem_vm_ops": (None, True, False),
}


def _vma(layout: Layout, names, ops: Optional[str] = None, file: Optional[str] = None,
         access: Optional[str] = None, writeback: bool = False) -> Vma:
    """A VMA with the flags *names* and the hooks of *ops* (:data:`KERNEL_HOOKS`; an ops not
    listed has a fault handler and nothing else); *writeback*: the file's backing device
    writes back. ``vma_needs_dirty_tracking()``: shared, writable, and mkwrite or writeback."""
    kernel_access, fault, mkwrite = KERNEL_HOOKS.get(ops or "", (None, True, False))
    flags = set(names)
    dirty = {"SHARED", "WRITE"} <= flags and (mkwrite or (writeback and "PFNMAP" not in flags))
    return dataclasses.replace(make_vma(vm(layout, *names), file=file), ops=ops, access=access or kernel_access,
                               fault=fault, dirty_tracking=dirty)


def records(layout: Layout, vma: Vma, lf: Optional[Leaf], kind: K) -> Dict[str, GupPrediction]:
    preds = predict(layout, vma_shape(vma, kind == K.FSDAX), lf, kind)
    assert tuple(p.user for p in preds) == USERS
    return {p.user: p for p in preds}


def table(layout: Layout, vma: Vma, lf: Optional[Leaf], kind: K) -> Dict[str, Tuple[str, str]]:
    """user → (outcome, decided_by)."""
    return {u: (p.outcome, p.decided_by) for u, p in records(layout, vma, lf, kind).items()}


def expect(t: Dict[str, Tuple[str, str]], outcomes: Dict[str, str], decided_by: str) -> None:
    """Every user of *outcomes* has that outcome, decided by *decided_by*."""
    assert {u: t[u] for u in outcomes} == {u: (o, decided_by) for u, o in outcomes.items()}


def fast_pte(layout: Layout) -> str:
    # 23babe1934d7 (v6.10) renamed gup_pte_range() to gup_fast_pte_range().
    return "gup_fast_pte_range" if layout is not L61 else "gup_pte_range"


def test_layout_facts_of_the_release_tables():
    # FOLL_PCI_P2PDMA: v6.2 (with CONFIG_PCI_P2PDMA, which the tables assume); vma_needs_dirty_tracking():
    # v6.5; gup_fast_* names: v6.10.
    assert (L61.gup_p2pdma_gate, L61.gup_longterm_file_check, L61.gup_fast_renamed) == (False, False, False)
    for layout in (L612, L72):
        assert (layout.gup_p2pdma_gate, layout.gup_longterm_file_check, layout.gup_fast_renamed) == (True, True, True)


@pytest.mark.parametrize(
    "symbols,expected",
    [
        # Debian 7.2 System.map: every symbol (FOLL_PCI_P2PDMA is an enumerator there).
        (["vma_needs_dirty_tracking", "gup_fast_fallback", "p2pmem_alloc_mmap", "mapping_wrprotect_range"],
         (True, True, True, False)),
        # Debian 6.12: no mapping_wrprotect_range (fb_defio still sets page->mapping), and no
        # p2pmem_alloc_mmap: CONFIG_PCI_P2PDMA is not set, so is_pci_p2pdma_page() is always false
        # (the lab saw its GUP take p2p_violate's P2PDMA pages).
        (["vma_needs_dirty_tracking", "gup_fast_fallback"], (False, True, True, True)),
        # A 6.12 built with CONFIG_PCI_P2PDMA.
        (["vma_needs_dirty_tracking", "gup_fast_fallback", "p2pmem_alloc_mmap"], (True, True, True, True)),
        # Debian 6.1 System.map: none; no FOLL_PCI_P2PDMA.
        (["internal_get_user_pages_fast"], (False, False, False, True)),
    ],
)
def test_gup_facts_are_learned_from_symbols(symbols, expected):
    learned = {}
    assert layout_stage._gup_facts(_program(symbols), learned) == expected
    assert learned["gup_longterm_file_check"].how == "symbol"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_pci_bar_mmap(layout):
    """A sysfs resourceN mmap: special PTEs of a BAR in a VM_PFNMAP|VM_IO VMA."""
    t = table(layout, _vma(layout, SHARED + ("PFNMAP", "IO"), "kernfs_vm_ops", BAR_FILE),
              leaf(special=True, pfn=0xFD000), K.NO_MEMMAP)
    # GUP-fast: pte_special() → back to the slow path.
    assert t["gup-fast"] == ("fallback", fast_pte(layout))
    # check_vma_flags(): "if (vm_flags & (VM_IO | VM_PFNMAP)) return -EFAULT;" for every flavour.
    for user in ("pin", "pin-longterm", "pin-p2pdma"):
        assert t[user] == ("refuse", "check_vma_flags")
    for user in ("odirect-read", "odirect-write", "io-uring-register", "ibv-reg-mr", "vmsplice", "futex"):
        assert t[user] == ("EFAULT", "check_vma_flags")
    # process_vm_rw_single_vec(): "if (pinned_pages <= 0) return -EFAULT;".
    assert t["process-vm-readv"] == ("EFAULT", "process_vm_rw_single_vec")
    # __access_remote_vm() falls back to vm_ops->access: kernfs_vma_access() →
    # pci_phys_vm_ops.access = generic_access_phys(), which ioremaps the BAR.
    assert t["proc-pid-mem"] == ("ok", "generic_access_phys")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_dev_mem_of_ram(layout):
    """/dev/mem of System RAM: generic_access_phys() → ioremap_prot() refuses RAM on x86."""
    t = table(layout, _vma(layout, SHARED + ("PFNMAP", "IO"), "mmap_mem_ops", "/dev/mem"),
              leaf(special=True), K.RAM)
    assert t["odirect-read"] == ("EFAULT", "check_vma_flags")
    # mem_rw(): access_remote_vm() copied nothing → -EIO.
    assert t["proc-pid-mem"] == ("EIO", "generic_access_phys")
    # The BIOS area the lab maps (0xf0000, which STRICT_DEVMEM allows): the first MiB is
    # memblock-reserved (PageReserved), and __ioremap_check_ram() lets reserved pages through.
    low = table(layout, _vma(layout, SHARED + ("PFNMAP", "IO"), "mmap_mem_ops", "/dev/mem"),
                leaf(special=True, pfn=0xF0), K.RAM)
    assert low["proc-pid-mem"] == ("ok", "generic_access_phys")


def _p2pmem(layout):
    # p2pmem_alloc_mmap(): vm_insert_page() of refcounted pages in a
    # VM_MAYSHARE|VM_MIXEDMAP VMA behind kernfs_vm_ops (which has page_mkwrite).
    return table(layout, _vma(layout, SHARED + ("MIXEDMAP",), "kernfs_vm_ops", P2P_FILE), leaf(), K.P2PDMA)


@pytest.mark.parametrize("layout", (L612, L72), ids=lambda l: l.release)
def test_p2pdma_mmap_is_gated_by_foll_pci_p2pdma(layout):
    t = _p2pmem(layout)
    # try_grab_folio_fast(): "!(flags & FOLL_PCI_P2PDMA) && is_pci_p2pdma_page(page)" → NULL.
    assert t["gup-fast"] == ("fallback", "try_grab_folio_fast")
    # try_grab_folio() (slow path): the same test returns -EREMOTEIO.
    assert t["pin"] == ("refuse", "try_grab_folio")
    assert t["pin-p2pdma"] == ("pin", "follow_page_pte")
    # O_DIRECT on virtio-blk: bio_iov_iter_get_pages() sets ITER_ALLOW_P2PDMA only
    # when blk_queue_pci_p2pdma(); virtio-blk's queue does not → -EREMOTEIO.
    for user in ("odirect-read", "odirect-write", "vmsplice"):
        assert t[user] == ("EREMOTEIO", "try_grab_folio")
    # On an NVMe namespace the queue allows P2PDMA: FOLL_PCI_P2PDMA; GUP-fast leaves the page
    # (no folio->mapping, as for every user) and the slow path takes it.
    assert t["odirect-nvme-read"] == t["odirect-nvme-write"] == ("ok", "follow_page_pte")
    # get_futex_key(): get_user_pages_fast(FOLL_WRITE) → -EREMOTEIO, not -EFAULT: no retry.
    assert t["futex"] == ("EREMOTEIO", "try_grab_folio")
    # FOLL_LONGTERM|FOLL_WRITE: check_vma_flags() → writable_file_mapping_allowed()
    # → vma_needs_dirty_tracking(): shared, writable, kernfs_vm_ops.page_mkwrite.
    assert t["pin-longterm"] == ("refuse", "check_vma_flags")
    assert t["io-uring-register"] == ("EFAULT", "check_vma_flags")
    assert t["ibv-reg-mr"] == ("EFAULT", "check_vma_flags")
    assert t["process-vm-readv"] == ("EFAULT", "process_vm_rw_single_vec")
    # access_remote_vm(): GUP fails, kernfs_vma_access() has no of->vm_ops → -EINVAL → mem_rw() -EIO.
    assert t["proc-pid-mem"] == ("EIO", "__access_remote_vm")


def test_p2pdma_pages_on_a_kernel_without_the_gate():
    """6.1 has no FOLL_PCI_P2PDMA (and no p2pmem mmap): a P2PDMA page is just a page."""
    t = _p2pmem(L61)
    assert t["gup-fast"] == ("take", "try_grab_folio")
    assert t["odirect-read"][0] == "ok"
    # io_pin_pages() (6.1): pins with pin_user_pages(), then "don't support file backed memory".
    assert t["io-uring-register"] == ("EOPNOTSUPP", "io_pin_pages")
    # get_futex_key(): folio->mapping is NULL (vm_insert_page() sets none) → -EFAULT.
    assert t["futex"] == ("EFAULT", "get_futex_key")


def _dax(layout: Layout, kind: K, level: Level) -> Dict[str, Tuple[str, str]]:
    """A DAX leaf as the kernel installs it: 6.1–6.14 pte_mkdevmap() = special|devmap
    (PMD: devmap only); v6.15+ (7851bf649d42) plain refcounted leaves."""
    devmap = not layout.dax_refcounted
    if kind == K.FSDAX:
        vma = _vma(layout, SHARED + ("SYNC",), "ext4_dax_vm_ops", "/mnt/pmem/f")
    else:
        vma = _vma(layout, SHARED + ("HUGEPAGE",), "dax_vm_ops", "/dev/dax0.0")
    t = table(layout, vma, leaf(level=level, special=devmap and level == Level.PTE, devmap=devmap), kind)
    # GUP-fast: the devmap branch (get_dev_pagemap()) or a plain page: taken.
    assert t["gup-fast"][0] == "take"
    return t


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_fsdax(layout):
    t = _dax(layout, K.FSDAX, Level.PTE)
    assert t["odirect-read"][0] == "ok" and t["vmsplice"][0] == "ok"
    # get_futex_key(): folio->mapping is the file's → inode-based key → futex_wait() -EAGAIN.
    assert t["futex"][0] == "EAGAIN"
    # check_vma_flags(): "(gup_flags & FOLL_LONGTERM) && vma_is_fsdax(vma)" → -EOPNOTSUPP.
    expect(t, {"pin-longterm": "refuse", "ibv-reg-mr": "EOPNOTSUPP", "io-uring-register": "EOPNOTSUPP"},
           "check_vma_flags")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_devdax_pmd(layout):
    t = _dax(layout, K.DEVDAX, Level.PMD)
    # ib_umem_get(): dax_vm_ops has no page_mkwrite and the dax inode no writeback.
    assert t["ibv-reg-mr"][0] == "ok"
    if layout is L61:
        # io_pin_pages() 6.1: file-backed, neither shmem nor hugetlbfs.
        assert t["io-uring-register"] == ("EOPNOTSUPP", "io_pin_pages")
    else:
        assert t["io-uring-register"][0] == "ok"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_device_private_entry_migrates_back(layout):
    p = records(layout, _vma(layout, RW), leaf(kind=EntryKind.DEVICE_PRIVATE), K.DEVICE_PRIVATE)
    # GUP-fast: not present → slow path; do_swap_page() → pgmap->ops->migrate_to_ram().
    assert p["gup-fast"].outcome == "fallback"
    assert (p["pin"].outcome, p["pin"].decided_by, p["pin"].migrates) == ("fault-first", "do_swap_page", True)
    assert p["odirect-read"].outcome == "ok" and p["odirect-read"].migrates
    assert p["process-vm-readv"].migrates


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_device_coherent_is_migrated_by_longterm_pins(layout):
    t = table(layout, _vma(layout, RW), leaf(), K.DEVICE_COHERENT)
    # folio_is_longterm_pinnable(): "Coherent device memory must always allow eviction."
    expect(t, {"pin-longterm": "migrate-first", "ibv-reg-mr": "ok"}, "folio_is_longterm_pinnable")
    assert t["pin"] == ("pin", "follow_page_pte") and t["gup-fast"][0] == "take"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_zero_page(layout):
    t = table(layout, _vma(layout, RW), leaf(special=True, writable=False, pfn=layout.zero_pfn), K.ZERO_PAGE)
    # GUP-fast: read-only PTE and FOLL_WRITE → pte_access_permitted() fails.
    assert t["gup-fast"][0] == "fallback"
    # can_follow_write_pte() fails → write fault (COW) first.
    assert t["pin"][0] == "fault-first"
    # Read access: vm_normal_page() NULL, is_zero_pfn() → the zero page itself.
    assert t["odirect-write"][0] == "ok"
    assert t["futex"][0] == "EAGAIN"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_memmapless_pfn_without_the_special_bit_oopses_gup_fast(layout):
    """The 2020-11 thread: "will crash the kernel when it tries to convert a IO page into a struct page"."""
    t = table(layout, _vma(layout, SHARED + ("PFNMAP", "IO")), leaf(special=False, pfn=0xFD000), K.NO_MEMMAP)
    # The oops hits where the page is first read: try_grab_folio_fast() (try_grab_folio() before v6.10).
    assert t["gup-fast"] == ("oops", "try_grab_folio" if layout is L61 else "try_grab_folio_fast")
    assert t["odirect-read"][0] == "oops" and t["futex"][0] == "oops"
    # The slow path alone (pin_user_pages_remote) stops at check_vma_flags().
    assert t["process-vm-readv"] == ("EFAULT", "process_vm_rw_single_vec")
    # io_pin_pages() used pin_user_pages() (slow only) until v6.5.
    assert t["io-uring-register"][0] == ("EFAULT" if layout is L61 else "oops")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_huge_pfnmap_pmd(layout):
    """A vmf_insert_pfn_pmd() leaf of a BAR: pmd_special() exists only with huge PFNMAP (v6.12)."""
    t = table(layout, _vma(layout, SHARED + ("PFNMAP", "IO")),
              leaf(level=Level.PMD, special=layout.has_pmd_special, pfn=0xFD000 & ~511), K.NO_MEMMAP)
    if layout.has_pmd_special:
        assert t["gup-fast"] == ("fallback", "gup_fast_pmd_leaf")
        assert t["odirect-read"] == ("EFAULT", "check_vma_flags")
    else:
        # gup_huge_pmd() (6.1) has no special test: pmd_page() of memory without memmap.
        assert t["gup-fast"] == ("oops", "try_grab_folio")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_special_pte_on_ram_outside_pfnmap(layout):
    t = table(layout, _vma(layout, RW), leaf(special=True), K.RAM)
    assert t["gup-fast"][0] == "fallback"
    # vm_normal_page(): special, no VM_PFNMAP/VM_MIXEDMAP, not the zero page →
    # "Bad page map", NULL; follow_pfn_pte() → -EEXIST, which __get_user_pages() returns.
    assert t["pin"] == ("refuse", "follow_pfn_pte")
    assert t["odirect-read"] == ("EEXIST", "follow_pfn_pte")


@pytest.mark.parametrize("layout", (L61, L612), ids=lambda l: l.release)
def test_devmap_pte_on_ram_makes_gup_retry(layout):
    t = table(layout, _vma(layout, RW), leaf(special=True, devmap=True), K.RAM)
    # GUP-fast: devmap → get_dev_pagemap() finds nothing → fallback.
    assert t["gup-fast"] == ("fallback", fast_pte(layout))
    # follow_page_pte(): devmap, no pgmap → no_page → fault (present PTE: nothing to do) → retry.
    assert t["pin"] == ("hang", "follow_page_pte")


def test_devmap_bit_is_ignored_where_the_kernel_has_none():
    t = table(L72, _vma(L72, RW), leaf(special=True, devmap=True), K.RAM)
    assert t["pin"] == ("refuse", "follow_pfn_pte")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_device_private_entry_to_ram_oopses(layout):
    t = table(layout, _vma(layout, RW), leaf(kind=EntryKind.DEVICE_PRIVATE), K.RAM)
    # do_swap_page(): page_pgmap(page)->ops->migrate_to_ram() of a RAM page.
    assert t["pin"] == ("oops", "do_swap_page")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_prot_none_and_read_only(layout):
    t = table(layout, _vma(layout, ("MAYREAD", "MAYWRITE")), None, K.NONE)
    # check_vma_flags(): no VM_READ and no FOLL_FORCE → -EFAULT; mem_rw() passes FOLL_FORCE
    # where proc_mem_foll_force() says so (always in 6.1/6.12, only for the tracer in Debian 7.2).
    assert t["odirect-write"] == ("EFAULT", "check_vma_flags")
    assert t["proc-pid-mem"][0] == ("ok" if layout.proc_mem_force == "always" else "EIO")
    ro = table(layout, _vma(layout, ("READ", "MAYREAD", "MAYWRITE")), leaf(writable=False), K.RAM)
    # get_futex_key(): FOLL_WRITE fails, the read-only retry finds an anonymous page:
    # "A RO anonymous page will never change" → -EFAULT.
    assert ro["futex"] == ("EFAULT", "get_futex_key")
    assert ro["odirect-write"][0] == "ok"


def test_predictions_are_computed_once_per_shape():
    vma = vma_shape(_vma(L72, RW))
    a = predict(L72, vma, leaf(va=0x1000), K.RAM)
    b = predict(L72, vma, leaf(va=0x5000, pfn=0x9999), K.RAM)
    assert a is b


def test_segments_cover_the_vma_and_merge_equal_neighbours():
    v = _vma(L72, RW)
    shape = vma_shape(v)
    start = v.start
    runs = [
        (start + 0x1000, start + 0x3000, leaf(va=start + 0x1000), K.RAM, NO_FOLIO_FACTS),
        (start + 0x3000, start + 0x4000, leaf(va=start + 0x3000, pfn=0x2000), K.RAM, NO_FOLIO_FACTS),
        (start + 0x4000, start + 0x5000, leaf(va=start + 0x4000, special=True, writable=False, pfn=L72.zero_pfn),
         K.ZERO_PAGE, NO_FOLIO_FACTS),
    ]
    segs = segments(L72, shape, start, start + 0x8000, runs)
    assert segs[0].start == start and segs[-1].end == start + 0x8000
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
    # hole | two RAM runs merged | zero page | hole
    assert [(s.start - start, s.end - start, s.hole) for s in segs] == [
        (0, 0x1000, True), (0x1000, 0x4000, False), (0x4000, 0x5000, False), (0x5000, 0x8000, True)]


def test_audit_json_carries_gup_segments_and_validates():
    v = _vma(L72, SHARED + ("PFNMAP", "IO"), "kernfs_vm_ops", BAR_FILE)
    shape = vma_shape(v)
    segs = segments(L72, shape, v.start, v.end, [(v.start, v.start + 0x4000, leaf(va=v.start, special=True), K.NO_MEMMAP, NO_FOLIO_FACTS)])
    report = VmaReport(vma=v, pages_by_kind=(("no-memmap", 4),), entries_by_kind=(("present", 4),),
                       leaves_by_level=(("pte", 4),), special=4, devmap=0, unreadable_tables=0, gup=segs)
    result = AuditResult(layout=L72, vmas=[report])
    doc = json.loads(json.dumps(audit_json(result, L72)))
    check_audit_json(doc)
    gup = doc["vmas"][0]["gup"]
    assert gup[0]["start"] == hex(v.start) and gup[-1]["end"] == hex(v.end)
    assert gup[0]["predictions"]["odirect-read"] == {
        "outcome": "EFAULT", "decided_by": "check_vma_flags",
        "why": "VM_IO|VM_PFNMAP: the slow path never takes pages of a PFN mapping", "migrates": False}
    import jsonschema
    broken = json.loads(json.dumps(doc))
    broken["vmas"][0]["gup"][0]["predictions"]["odirect-read"]["outcome"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        check_audit_json(broken)
    broken["vmas"][0]["gup"] = [{"start": gup[0]["start"], "end": gup[0]["end"], "predictions": {}}]
    with pytest.raises(jsonschema.ValidationError):
        check_audit_json(broken)  # every user must be predicted


def test_text_summary_groups_users_by_outcome():
    v = _vma(L72, SHARED + ("PFNMAP", "IO"), "kernfs_vm_ops", BAR_FILE)
    line = gup_summary(predict(L72, vma_shape(v), leaf(special=True), K.NO_MEMMAP))
    assert line.startswith("fast:fallback pin:refuse(EFAULT) longterm:refuse(EFAULT) p2pdma:refuse(EFAULT)")
    assert "| EFAULT: odirect-read odirect-write odirect-nvme-read odirect-nvme-write io-uring-register ibv-reg-mr vmsplice futex process-vm-readv" in line
    assert line.endswith("| ok: proc-pid-mem")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_vdso_futex_has_no_key(layout):
    # _install_special_mapping(): kernel pages, VM_MAYWRITE but no VM_WRITE.
    t = table(layout, _vma(layout, ("READ", "EXEC", "MAYREAD", "MAYWRITE", "MAYEXEC", "MIXEDMAP"),
                           "special_mapping_vmops"), leaf(writable=False), K.RAM)
    # check_vma_flags(): FOLL_WRITE without VM_WRITE → -EFAULT (O_DIRECT read into it).
    assert t["odirect-read"] == ("EFAULT", "check_vma_flags")
    # get_futex_key(): the read-only retry finds a page whose folio->mapping is NULL.
    assert t["futex"] == ("EFAULT", "get_futex_key")
    assert t["odirect-write"][0] == "ok"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_non_present_entries(layout):
    rw = _vma(layout, RW)
    swap = table(layout, rw, leaf(kind=EntryKind.SWAP, pfn=None), K.NONE)
    # GUP-fast: not present; the slow path faults: do_swap_page() swaps in.
    assert swap["gup-fast"][0] == "fallback" and swap["pin"] == ("fault-first", "do_swap_page")
    hw = table(layout, rw, leaf(kind=EntryKind.HWPOISON), K.RAM)
    # vm_fault_to_errno(): VM_FAULT_HWPOISON without FOLL_HWPOISON → -EFAULT; mem_rw() → -EIO.
    assert hw["odirect-read"] == ("EFAULT", "vm_fault_to_errno")
    assert hw["proc-pid-mem"] == ("EIO", "__access_remote_vm")
    mig = table(layout, rw, leaf(kind=EntryKind.MIGRATION), K.RAM)
    assert mig["odirect-read"] == ("ok", "migration_entry_wait")


def test_guard_marker_faults_with_sigsegv():
    # handle_pte_marker(): PTE_MARKER_GUARD → VM_FAULT_SIGSEGV → -EFAULT (v6.13+).
    lf = dataclasses.replace(leaf(kind=EntryKind.MARKER, pfn=None), swap_offset=L72.pte_markers["guard"])
    t = table(L72, _vma(L72, RW), lf, K.NONE)
    assert t["odirect-write"] == ("EFAULT", "handle_pte_marker")


def test_uffd_wp_write_waits_for_the_handler():
    t = table(L72, _vma(L72, RW + ("UFFD_WP",)), leaf(writable=False), K.RAM)
    # A write fault on a write-protected PTE: handle_userfault() sleeps until userspace resolves it.
    assert t["odirect-read"] == ("hang", "handle_userfault")
    assert t["odirect-write"][0] == "ok"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_memmapless_pte_outside_pfnmap_depends_on_highest_memmap_pfn(layout):
    """A non-special PTE of a PFN without memmap in a VMA that check_vma_flags() lets through."""
    vma, lf = _vma(layout, SHARED), leaf(special=False, pfn=0x800000)
    below = table(dataclasses.replace(layout, highest_memmap_pfn=0x900000), vma, lf, K.NO_MEMMAP)
    above = table(dataclasses.replace(layout, highest_memmap_pfn=0x7FFFFF), vma, lf, K.NO_MEMMAP)
    # GUP-fast never compares with highest_memmap_pfn: pte_page() → oops either way.
    assert below["gup-fast"][0] == above["gup-fast"][0] == "oops"
    # The slow path alone (pin_user_pages_remote): vm_normal_page() "if (unlikely(pfn >
    # highest_memmap_pfn))" → "Bad page map", NULL → follow_pfn_pte() -EEXIST → -EFAULT.
    assert above["pin"] == ("refuse", "follow_pfn_pte")
    assert below["pin"] == ("oops", "vm_normal_page")
    assert above["process-vm-readv"] == ("EFAULT", "process_vm_rw_single_vec")
    assert below["process-vm-readv"][0] == "oops"


def test_unknown_pte_marker_is_sigbus():
    # handle_pte_marker(): a marker with no bit it knows → VM_FAULT_SIGBUS → -EFAULT.
    lf = dataclasses.replace(leaf(kind=EntryKind.GARBAGE, pfn=None), swap_type=L72.swap.pte_marker)
    t = table(L72, _vma(L72, RW), lf, K.NONE)
    assert t["odirect-read"] == ("EFAULT", "handle_pte_marker")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_fbdev_deferred_io_futex(layout):
    """qxl's fbdev: vmalloc'ed shadow pages mapped by fb_deferred_io_fault().
    Until fb_defio moved to mapping_wrprotect_range() it set page->mapping
    (6.12 fb_defio.c: "page->mapping = vmf->vma->vm_file->f_mapping"), so
    get_futex_key() resolved a file key and the mismatching value gave EAGAIN;
    7.2 no longer sets it, and get_futex_key() meets a NULL folio->mapping: EFAULT."""
    t = table(layout, _vma(layout, SHARED + ("DONTEXPAND", "DONTDUMP"), "fb_deferred_io_vm_ops", "/dev/fb0"),
              leaf(pfn=0x12345), K.RAM)
    want = ("EAGAIN", "futex_wait_setup") if layout.fb_defio_page_mapping else ("EFAULT", "get_futex_key")
    assert t["futex"] == want
    assert layout.fb_defio_page_mapping == (layout is not L72)


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_proc_pid_mem_of_prot_none_follows_the_force_policy(layout):
    """PROT_NONE anonymous memory read through /proc/PID/mem by a process that
    does not ptrace it: check_vma_flags() lets a read of a !VM_READ VMA through
    only with FOLL_FORCE, which mem_rw() adds when proc_mem_foll_force() says
    so — always before v6.12 and with CONFIG_PROC_MEM_ALWAYS_FORCE (Debian
    6.12), only for the tracer with CONFIG_PROC_MEM_FORCE_PTRACE (Debian 7.2):
    then GUP fails and anonymous memory has no vm_ops->access: EIO."""
    t = table(layout, _vma(layout, ("MAYREAD", "MAYWRITE", "MAYEXEC")), leaf(pfn=0x12345), K.RAM)
    assert t["proc-pid-mem"][0] == ("ok" if layout.proc_mem_force == "always" else "EIO")
    assert layout.proc_mem_force == ("ptrace" if layout is L72 else "always")


def test_proc_mem_force_is_read_from_the_kernel():
    class Value:
        type_ = type("T", (), {"enumerators": (("PROC_MEM_FORCE_ALWAYS", 0), ("PROC_MEM_FORCE_PTRACE", 1),
                                               ("PROC_MEM_FORCE_NEVER", 2))})()

        def value_(self):
            return 1

    class Prog(dict):
        pass

    learned = {}
    assert layout_stage._proc_mem_force(Prog(proc_mem_force_override=Value()), learned) == "ptrace"
    assert learned["proc_mem_force"].how == "variable"
    assert layout_stage._proc_mem_force(Prog(), learned) == "always"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_a_hole_in_a_mapping_without_a_fault_handler(layout):
    """TCP zerocopy receive's VMA (tcp_mmap(): VM_MIXEDMAP, ``tcp_vm_ops = {}``):
    only pages tcp_zerocopy_receive() inserted are mapped; GUP faulting a hole
    gets VM_FAULT_SIGBUS from do_fault() ("if (!vma->vm_ops->fault)"), so
    pinning fails with EFAULT and /proc/PID/mem, with no vm_ops->access, EIO."""
    t = table(layout, _vma(layout, ("READ", "MAYREAD", "SHARED", "MAYSHARE", "MIXEDMAP"), "tcp_vm_ops",
                           "TCP"), None, K.NONE)
    assert t["process-vm-readv"][0] == "EFAULT"
    assert t["odirect-write"] == ("EFAULT", "do_fault")
    assert t["proc-pid-mem"][0] == "EIO"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_vdso_data_page_in_a_vm_io_mixedmap(layout):
    """7.x's [vvar]: kernel data pages with struct pages vm_insert_page()d into a
    VM_IO|VM_MIXEDMAP special mapping (lib/vdso/datastore.c). GUP-fast would take
    the non-special PTE, but since 65291dcfcf89 (v6.9) gup_fast_folio_allowed()
    reads folio->mapping of every order-0 folio when CONFIG_SECRETMEM is set, and
    a NULL mapping sends it to the slow path, where check_vma_flags() refuses
    VM_IO: vmsplice (get_user_pages_fast()) gets EFAULT. Before the fix (6.1)
    GUP-fast took it."""
    t = table(layout, _vma(layout, ("READ", "MAYREAD", "IO", "DONTEXPAND", "DONTDUMP", "MIXEDMAP"),
                           "special_mapping_vmops"), leaf(pfn=0x1234, writable=False), K.RAM)
    # (the gup-fast row asks FOLL_WRITE, which the read-only PTE refuses anyway; vmsplice reads)
    if layout.gup_fast_secretmem_mapping:
        assert t["vmsplice"] == ("EFAULT", "check_vma_flags")
    else:
        assert t["vmsplice"][0] == "ok"
    assert layout.gup_fast_secretmem_mapping == (layout is not L61)


@pytest.mark.parametrize("layout", (L61, L612), ids=lambda l: l.release)
def test_perf_ring_data_pages_refuse_write_pins(layout):
    """A perf ring before 7.x: pages faulted in by perf_mmap_fault(), which is
    also the ring's page_mkwrite and returns VM_FAULT_SIGBUS for every page but
    the first (the control page). A FOLL_WRITE pin of a read-only data page
    needs that write fault: EFAULT (6.1). From v6.5 check_vma_flags() refuses
    FOLL_LONGTERM write pins of a VMA whose vm_ops has page_mkwrite first."""
    vma = _vma(layout, SHARED + ("DONTEXPAND", "DONTDUMP"), "perf_mmap_vmops", "[perf_event]")
    data = table(layout, vma, leaf(va=vma.start + 0x3000, writable=False), K.RAM)
    first = table(layout, vma, leaf(va=vma.start, writable=False), K.RAM)
    want = "check_vma_flags" if layout.gup_longterm_file_check else "perf_mmap_fault"
    assert data["io-uring-register"][0] == data["ibv-reg-mr"][0] == "EFAULT"
    assert data["ibv-reg-mr"][1] == want
    assert data["odirect-read"] == ("EFAULT", "perf_mmap_fault")
    # the control page takes the write fault (page_mkwrite returns 0)
    assert first["odirect-read"][0] == "ok"


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_proc_pid_mem_falls_back_to_the_access_the_kernel_has(layout) -> None:
    """/proc/PID/mem on a PFN mapping: GUP refuses VM_IO|VM_PFNMAP and __access_remote_vm()
    calls vm_ops->access, read from the kernel: generic_access_phys() (uio's BAR map) ioremaps
    the BAR, a function the model does not know is trusted to copy, none copies nothing."""
    flags = ("READ", "MAYREAD", "MAYSHARE", "PFNMAP", "IO")
    bar = leaf(pfn=0xFEBD1, special=True)

    def proc_mem(vma: Vma):
        return table(layout, vma, bar, K.NO_MEMMAP)["proc-pid-mem"]

    assert proc_mem(_vma(layout, flags, "uio_physical_vm_ops", "/dev/uio0")) == ("ok", "generic_access_phys")
    assert proc_mem(_vma(layout, flags, "some_vm_ops", "/dev/x", access="some_access")) == ("ok", "some_access")
    assert proc_mem(_vma(layout, flags, "some_vm_ops", "/dev/x", access=None)) == ("EIO", "__access_remote_vm")


@pytest.mark.parametrize("layout", ALL, ids=lambda l: l.release)
def test_a_device_page_with_no_reference_is_refused(layout):
    """Seen on 7.2 with p2p_violate's own ZONE_DEVICE pages, mapped without a reference: GUP-fast's
    folio_ref_try_add() fails and falls back; the slow path's try_grab_folio() (try_grab_page() on
    6.1) WARNs once and returns -ENOMEM, before its P2PDMA test; a VM_PFNMAP VMA refuses first."""
    def with_refs(vma: Vma, kind: K, unreferenced: bool):
        preds = predict(layout, vma_shape(vma), leaf(pfn=0x100000), kind, FolioFacts(unreferenced=unreferenced))
        return {p.user: (p.outcome, p.decided_by) for p in preds}

    grab = "try_grab_folio" if layout is L61 else "try_grab_folio_fast"
    mixed = _vma(layout, SHARED + ("MIXEDMAP",))
    t = with_refs(mixed, K.P2PDMA, True)
    assert t["gup-fast"] == ("fallback", grab)
    assert t["odirect-read"] == t["vmsplice"] == ("ENOMEM", "try_grab_folio")
    assert with_refs(mixed, K.P2PDMA, False)["odirect-read"][0] == ("EREMOTEIO" if layout.gup_p2pdma_gate else "ok")
    pfnmap = _vma(layout, SHARED + ("PFNMAP", "IO"))
    assert with_refs(pfnmap, K.DEVDAX, True)["odirect-read"] == ("EFAULT", "check_vma_flags")
    assert with_refs(pfnmap, K.DEVDAX, False)["odirect-read"][0] == "ok"


def test_a_device_page_whose_folio_has_no_mapping_falls_back_from_gup_fast():
    """Seen on 7.2 (p2p_violate's device-dax pages, order 0, mapping NULL, in a VM_PFNMAP VMA):
    gup_fast_folio_allowed() cannot rule out secretmem for an order-0 folio without a mapping,
    GUP-fast falls back, and the slow path refuses VM_PFNMAP: EFAULT, not the page."""
    pfnmap = _vma(L72, SHARED + ("PFNMAP", "IO"))

    def t(folio):
        return {p.user: (p.outcome, p.decided_by) for p in predict(L72, vma_shape(pfnmap), leaf(pfn=0x100000),
                                                                  K.DEVDAX, folio)}

    assert t(FolioFacts(unmapped=True))["gup-fast"] == ("fallback", "gup_fast_folio_allowed")
    assert t(FolioFacts(unmapped=True))["odirect-read"] == ("EFAULT", "check_vma_flags")
    assert t(NO_FOLIO_FACTS)["odirect-read"][0] == "ok"  # dax_set_mapping()'s mapping: taken


@pytest.mark.parametrize("layout", (L61, L612), ids=lambda l: l.release)
def test_a_devmap_ram_page_without_a_mapping_is_no_futex_key(layout):
    """Seen on 6.12 (p2p_violate's devmap-not-special: RAM pages from alloc_page(), mapped devmap
    without VM_MIXEDMAP in the module's VMA): the slow path takes the page, get_futex_key() finds
    folio->mapping NULL and returns -EFAULT. The VMA alone says a driver file: only the folio tells."""
    driver = _vma(layout, SHARED, "p2p_violate_vm_ops", "/dev/p2p_violate")
    devmap_ram = leaf(pfn=0x1000, devmap=True)

    def futex(folio: FolioFacts) -> Tuple[str, str]:
        preds = predict(layout, vma_shape(driver), devmap_ram, K.RAM, folio)
        return next((p.outcome, p.decided_by) for p in preds if p.user == "futex")

    assert futex(FolioFacts(unmapped=True)) == ("EFAULT", "get_futex_key")
    assert futex(NO_FOLIO_FACTS) == ("EAGAIN", "futex_wait_setup")


@pytest.mark.parametrize(
    "names,lf,kind,read",
    [
        (SHARED + ("MIXEDMAP",), leaf(), K.P2PDMA, True),  # a device page
        (SHARED, leaf(devmap=True), K.RAM, True),  # a devmap leaf: get_dev_pagemap() and the folio decide
        (SHARED + ("MIXEDMAP",), leaf(), K.RAM, True),  # vm_insert_page(): a driver's page
        (RW, leaf(), K.RAM, False),  # anonymous or page cache: the VMA tells
        (SHARED + ("PFNMAP", "IO"), leaf(special=True), K.NO_MEMMAP, False),  # no struct page to read
        (SHARED + ("MIXEDMAP",), leaf(kind=EntryKind.SWAP, pfn=None), K.NONE, False),  # nothing mapped
    ],
)
def test_which_folios_the_audit_reads(names, lf, kind, read):
    from drgn_p2p.pipeline import reads_folio

    assert reads_folio(_vma(L612, names), L612, lf, kind) is read
