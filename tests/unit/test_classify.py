# SPDX-License-Identifier: GPL-2.0-or-later
"""The classifier's answers at the edges of its ranges, and what it does when
device memory appears after its snapshot was taken (a driver adding a pgmap
while an audit runs)."""

from drgn_p2p.classify import Classifier, Pagemap
from drgn_p2p.records import PageKind

from .layouts import HUGE_ZERO_PFN, L72, ZERO_PFN

FSDAX = Pagemap(0xFFFF_8880_0100_0000, "FS_DAX", 0x40000, 0x48000, None, None, True, PageKind.FSDAX)
PRIVATE = Pagemap(0xFFFF_8880_0200_0000, "PRIVATE", 0x10_0000, 0x10_4000, None, "dmirror_devmem_ops", True,
                  PageKind.DEVICE_PRIVATE)
MEMMAP = [(0x1000, 0x80000)]
IOMEM = [(0x1000 << 12, 0x80000 << 12, "System RAM"), (0xC0000 << 12, 0xC1000 << 12, "0000:00:04.0")]


def test_range_edges():
    c = Classifier.from_tables(L72, [FSDAX], list(MEMMAP), list(IOMEM))
    kinds = {pfn: c.classify(pfn).kind for pfn in (
        0xFFF, 0x1000, 0x3FFFF, 0x40000, 0x47FFF, 0x48000, 0x7FFFF, 0x80000, 0xC0000, 0xC0FFF, 0xC1000,
        ZERO_PFN, HUGE_ZERO_PFN - 1, HUGE_ZERO_PFN, HUGE_ZERO_PFN + 511, HUGE_ZERO_PFN + 512)}
    assert kinds == {
        0xFFF: PageKind.NO_MEMMAP, 0x1000: PageKind.RAM, 0x3FFFF: PageKind.RAM, 0x40000: PageKind.FSDAX,
        0x47FFF: PageKind.FSDAX, 0x48000: PageKind.RAM, 0x7FFFF: PageKind.RAM, 0x80000: PageKind.NO_MEMMAP,
        0xC0000: PageKind.NO_MEMMAP, 0xC0FFF: PageKind.NO_MEMMAP, 0xC1000: PageKind.NO_MEMMAP,
        ZERO_PFN: PageKind.ZERO_PAGE, HUGE_ZERO_PFN - 1: PageKind.RAM, HUGE_ZERO_PFN: PageKind.HUGE_ZERO,
        HUGE_ZERO_PFN + 511: PageKind.HUGE_ZERO, HUGE_ZERO_PFN + 512: PageKind.RAM,
    }
    assert c.classify(0xC0000).owner == "0000:00:04.0" and c.classify(0xC1000).owner is None
    assert c.classify(0x40000).pgmap == FSDAX.address and c.classify(None).kind == PageKind.NONE
    # A span never crosses a range edge, and every PFN in it gets the same answer.
    for pfn in (0x1000, 0x40000, 0x47FFF, 0xC0000, HUGE_ZERO_PFN):
        lo, hi = c.span(pfn)
        assert lo <= pfn < hi
        for probe in (lo, pfn, min(hi, 0x100_0000) - 1):
            assert c.classify(probe) is c.classify(pfn)


def test_device_memory_added_after_the_snapshot_is_seen():
    """test_hmm grows its device-private memory while an audit runs: a PFN the
    snapshot does not know is looked up again before it is judged."""
    tables = {"pagemaps": [FSDAX], "memmap": list(MEMMAP)}

    def reload():
        return list(tables["pagemaps"]), list(tables["memmap"])

    c = Classifier.from_tables(L72, [FSDAX], list(MEMMAP), list(IOMEM), reload=reload)
    # The driver adds its pgmap (and memmap) after the classifier was built.
    tables["pagemaps"] = [FSDAX, PRIVATE]
    tables["memmap"] = list(MEMMAP) + [(0x10_0000, 0x10_4000)]
    info = c.classify(0x10_0010)
    assert (info.kind, info.pgmap) == (PageKind.DEVICE_PRIVATE, PRIVATE.address)
    assert (c.reloads, c.reloads_changed) == (1, 1)
    assert c.span(0x10_0010) == (0x10_0000, 0x10_4000)


def test_unknown_memory_is_reread_once_per_span():
    c = Classifier.from_tables(L72, [FSDAX], list(MEMMAP), list(IOMEM),
                               reload=lambda: ([FSDAX], list(MEMMAP)))
    # Every page of a BAR: the tables are read again once, not per page.
    for pfn in range(0xC0000, 0xC1000):
        assert c.classify(pfn).kind == PageKind.NO_MEMMAP
    assert c.span(0xC0800)[0] <= 0xC0000
    # RAM, pgmap and zero-page PFNs never cause a re-read.
    for pfn in (0x1000, 0x40000, ZERO_PFN, HUGE_ZERO_PFN):
        c.classify(pfn)
    assert (c.reloads, c.reloads_changed) == (1, 0)


def test_ram_behind_a_lost_pgmap_says_whether_its_struct_pages_could_be_read(monkeypatch):
    """In a filtered vmcore part of the pgmap table may be lost: device pages then
    read as RAM, and their struct pages (on the device) are not in the dump: the
    answer must say so rather than claim a readable memmap. The pmem range's
    memmap is contiguous with RAM's, so only its iomem resource sets it apart."""
    from drgn_p2p import classify

    iomem = [(0x1000 << 12, 0x40000 << 12, "System RAM"), (0x40000 << 12, 0x50000 << 12, "namespace0.0")]
    c = Classifier.from_tables(L72, [], [(0x1000, 0x50000)], iomem)
    c.faults.append("pgmap_array: could not read memory")
    c._prog = object()
    monkeypatch.setattr(classify, "_memmap_readable", lambda prog, pfn: pfn < 0x40000)
    assert c.classify(0x2000).memmap_readable is True
    lost = c.classify(0x40010)
    assert (lost.kind, lost.memmap_readable) == (PageKind.RAM, False)
    assert c.span(0x40010) == (0x40000, 0x50000) and c.span(0x2000)[1] <= 0x40000
    assert c.classify(0x4FFFF) is lost  # one answer over the span, as span() promises
