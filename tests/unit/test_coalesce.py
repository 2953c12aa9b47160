# SPDX-License-Identifier: GPL-2.0-or-later
"""Coalescing leaves into runs and findings into merged findings."""

import itertools

from drgn_p2p.coalesce import coalesce, merge_findings
from drgn_p2p.records import EntryKind, Finding, Level, PageKind, PfnInfo, Severity
from drgn_p2p import rules as R

from .layouts import L72, VM_FLAGS_ANON, VM_FLAGS_P2P, VM_FLAGS_PCIBAR, leaf, make_vma

VA = 0x7F00_0000_0000
BAR = PfnInfo(PageKind.NO_MEMMAP, owner="0000:00:04.0 BAR2")
RAM = PfnInfo(PageKind.RAM)


def ptes(n, start=VA, pfn=0x184000, **kw):
    return [leaf(va=start + i * 0x1000, pfn=pfn + i, **kw) for i in range(n)]


def shape(runs):
    return [(r.start, r.count, r.first.level) for r in runs]


def test_contiguous_identical_leaves_make_one_run():
    vma = make_vma(VM_FLAGS_PCIBAR)
    runs = list(coalesce(vma, ((lf, BAR) for lf in ptes(512, special=True))))
    assert shape(runs) == [(VA, 512, Level.PTE)]
    assert (runs[0].end, runs[0].page, runs[0].vma) == (VA + 512 * 0x1000, BAR, vma)


def test_equal_but_distinct_pfninfo_objects_join():
    vma = make_vma(VM_FLAGS_PCIBAR)
    items = [(lf, PfnInfo(PageKind.NO_MEMMAP, owner="0000:00:04.0 BAR2")) for lf in ptes(3, special=True)]
    assert shape(coalesce(vma, items)) == [(VA, 3, Level.PTE)]


def test_breaks():
    vma = make_vma(VM_FLAGS_PCIBAR)
    a = ptes(4, special=True)
    gap = ptes(2, start=VA + 0x6000, pfn=0x184006, special=True)  # hole at +0x4000
    other_bits = [leaf(va=VA + 0x8000, pfn=0x184008, special=False)]
    writable = [leaf(va=VA + 0x9000, pfn=0x184009, special=False, writable=False)]
    other_page = [leaf(va=VA + 0xA000, pfn=0x18400A, special=False, writable=False)]
    items = [(lf, BAR) for lf in a + gap + other_bits + writable] + [(other_page[0], RAM)]
    assert shape(coalesce(vma, items)) == [
        (VA, 4, Level.PTE), (VA + 0x6000, 2, Level.PTE), (VA + 0x8000, 1, Level.PTE),
        (VA + 0x9000, 1, Level.PTE), (VA + 0xA000, 1, Level.PTE)]


def test_breaks_on_level_kind_swap_type_and_pgmap():
    vma = make_vma(VM_FLAGS_ANON)
    pmd = leaf(va=VA, level=Level.PMD, pfn=0x200)
    pte = leaf(va=VA + 0x200000, pfn=0x400)
    swap_a = leaf(va=VA + 0x201000, kind=EntryKind.MIGRATION, pfn=0x401, swap_type=25)
    swap_b = leaf(va=VA + 0x202000, kind=EntryKind.MIGRATION, pfn=0x402, swap_type=27)
    dp1 = leaf(va=VA + 0x203000, kind=EntryKind.DEVICE_PRIVATE, pfn=0x10, swap_type=28)
    dp2 = leaf(va=VA + 0x204000, kind=EntryKind.DEVICE_PRIVATE, pfn=0x11, swap_type=28)
    pg1, pg2 = PfnInfo(PageKind.DEVICE_PRIVATE, pgmap=0x1000), PfnInfo(PageKind.DEVICE_PRIVATE, pgmap=0x2000)
    items = [(pmd, RAM), (pte, RAM), (swap_a, RAM), (swap_b, RAM), (dp1, pg1), (dp2, pg2)]
    assert [r.count for r in coalesce(vma, items)] == [1, 1, 1, 1, 1, 1]
    # Huge leaves continue each other by their own size.
    pmds = [(leaf(va=VA + i * 0x200000, level=Level.PMD, pfn=0x200 * i), RAM) for i in range(3)]
    assert shape(coalesce(vma, pmds)) == [(VA, 3, Level.PMD)]


def test_breaks_where_pfn_linearity_changes():
    # Private PFNMAP: the COW exception depends on pfn == pgoff + index, so a run
    # must not mix the linear PFN with COWed pages.
    vma = make_vma(VM_FLAGS_PCIBAR, pgoff=0x5000)
    lin = [leaf(va=VA + i * 0x1000, pfn=0x5000 + i) for i in range(3)]
    cow = [leaf(va=VA + 0x3000, pfn=0x9999), leaf(va=VA + 0x4000, pfn=0x7777)]
    items = [(lf, RAM) for lf in lin + cow]
    assert [r.count for r in coalesce(vma, items)] == [3, 2]


def test_coalesce_streams():
    vma = make_vma(VM_FLAGS_ANON)
    endless = ((leaf(va=VA + i * 0x1000, pfn=i, writable=bool(i // 10 % 2)), RAM) for i in itertools.count())
    first_three = list(itertools.islice(coalesce(vma, endless), 3))
    assert [r.count for r in first_three] == [10, 10, 10]


def test_coalesce_empty():
    assert list(coalesce(make_vma(VM_FLAGS_ANON), [])) == []


# --- findings --------------------------------------------------------------------


def finding(rule, start, end, count=1, message="m", vma=None):
    return Finding(rule, Severity.ERROR, vma or make_vma(VM_FLAGS_ANON), start, end, count, message)


def test_merge_interleaved_rules():
    vma = make_vma(VM_FLAGS_ANON)
    stream = []
    for i in range(4):  # evaluate_run yields A and B for each of four adjacent runs
        s, e = VA + i * 0x2000, VA + (i + 1) * 0x2000
        stream += [finding("a", s, e, 2, vma=vma), finding("b", s, e, 2, vma=vma)]
    merged = list(merge_findings(stream))
    assert [(f.rule, f.start, f.end, f.count) for f in merged] == [
        ("a", VA, VA + 0x8000, 8), ("b", VA, VA + 0x8000, 8)]


def test_merge_needs_contiguity_same_message_same_vma():
    v1, v2 = make_vma(VM_FLAGS_ANON), make_vma(VM_FLAGS_P2P)
    stream = [
        finding("a", VA, VA + 0x1000, vma=v1),
        finding("a", VA + 0x2000, VA + 0x3000, vma=v1),  # gap
        finding("a", VA + 0x3000, VA + 0x4000, message="other", vma=v1),  # other message
        finding("a", VA + 0x4000, VA + 0x5000, message="other", vma=v2),  # other VMA
    ]
    merged = list(merge_findings(stream))
    assert [(f.start, f.message, f.vma) for f in merged] == [
        (VA, "m", v1), (VA + 0x2000, "m", v1), (VA + 0x3000, "other", v1), (VA + 0x4000, "other", v2)]


def test_merge_keeps_first_evidence():
    vma = make_vma(VM_FLAGS_PCIBAR)
    items = [(lf, BAR) for lf in ptes(8)]  # not special: no-memmap-not-special on each
    items[4] = (leaf(va=VA + 0x4000, pfn=0x184004, writable=False), BAR)  # splits the run, same verdict
    findings = (f for r in coalesce(vma, items) for f in R.evaluate_run(r, L72))
    (f,) = merge_findings(findings)
    assert (f.rule, f.start, f.end, f.count) == ("no-memmap-not-special", VA, VA + 0x8000, 8)
    assert f.first.pfn == 0x184000 and dict(f.evidence)["pfn"] == "0x184000"


def test_merge_empty():
    assert list(merge_findings([])) == []
