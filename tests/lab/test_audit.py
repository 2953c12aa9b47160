# SPDX-License-Identifier: GPL-2.0-or-later
"""
The audit on real kernels: every mapping the lab holds is classified as the
kind it was created as, with the bits its kernel gives it; a clean guest has
no error-level finding; and QMP, a vmcore and live /proc/kcore agree.
"""

import json
import tempfile
from pathlib import Path
from typing import Dict, List

import pytest
from lab_prereq import check_setup

from drgn_p2p.lab.cli import run_audit
from drgn_p2p.lab.scenarios import SCENARIOS

pytestmark = pytest.mark.lab

#: Lab kernels the audit is verified on.
KERNELS = ("6.1", "6.12", "newest")
SOURCES = ("qemu", "vmcore", "live")


def _json_from(output: str) -> Dict:
    start = output.find("{\n")
    assert start >= 0, f"no JSON in output:\n{output[-2000:]}"
    return json.loads(output[start:])


class LabAudit:
    """One guest and the ``audit --json --runs`` document from each source."""

    def __init__(self, guest, docs: Dict[str, Dict]) -> None:
        self.guest = guest
        self.docs = docs

    def mappings(self, kind: str) -> List[Dict]:
        found = [m for m in self.guest.mappings if m["kind"] == kind]
        if not found:
            reason = self.guest.skipped.get(kind, "not in the manifest")
            pytest.skip(f"{kind} not held on {self.guest.kernel.kver}: {reason}")
        return found

    def vma(self, m: Dict, source: str = "qemu") -> Dict:
        kind = m["kind"]
        addr = int(m["addr"])
        for vma in self.docs[source]["vmas"]:
            if vma["pid"] == int(m["pid"]) and int(vma["start"], 16) <= addr < int(vma["end"], 16):
                return vma
        raise AssertionError(f"{source}: no VMA of pid {m['pid']} holds {addr:#x} ({kind})")


@pytest.fixture(scope="module", params=KERNELS)
def lab(request, lab_guest) -> LabAudit:
    guest = lab_guest(request.param)
    docs = {}
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-test-") as tmp:
        for source in SOURCES:
            code, output = run_audit(guest, source, ["--json", "--runs", "-v"], Path(tmp))
            assert code in (0, 1), f"audit via {source} failed ({code}):\n{output[-3000:]}"
            docs[source] = _json_from(output)
    return LabAudit(guest, docs)


def _features(doc: Dict) -> Dict:
    return doc["layout"]


def _check_expectation(expect: str, vma: Dict, doc: Dict) -> List[str]:
    """Mismatches between what *vma* maps and what the lab created (empty: fine)."""
    pages, entries, leaves = vma["pages"], vma["entries"], vma["leaves"]
    flags = set(vma["flag_names"])
    present = sum(leaves.values())
    lay = _features(doc)
    problems = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    if expect == "anon":
        need(pages.get("ram", 0) > 0 and set(pages) <= {"ram", "zero-page"}, f"anonymous RAM, got {pages}")
        need(vma["special"] == 0, "no special leaves")
    elif expect == "thp-pmd":
        need(leaves.get("pmd", 0) > 0 and set(pages) == {"ram"}, f"a RAM PMD leaf, got {pages} {leaves}")
    elif expect == "zero-page":
        need(pages.get("zero-page", 0) > 0, f"zero-page PTEs, got {pages}")
        need(vma["special"] >= pages.get("zero-page", 0), "the zero page mapped special")
    elif expect == "protnone":
        need(entries.get("protnone", 0) > 0, f"PROT_NONE entries, got {entries}")
    elif expect == "swap":
        need(entries.get("swap", 0) > 0, f"swap entries, got {entries}")
    elif expect == "fsdax":
        need(pages.get("fsdax", 0) > 0 and set(pages) == {"fsdax"}, f"fsdax pages only, got {pages}")
        need(not flags & {"PFNMAP", "MIXEDMAP"}, f"neither PFNMAP nor MIXEDMAP, got {sorted(flags)}")
        if lay["devmap_bit"] is not None and not lay["dax_refcounted"]:
            need(vma["devmap"] == present, f"every DAX leaf devmap ({vma['devmap']}/{present})")
            need(vma["special"] == leaves.get("pte", 0), "every DAX PTE special (pte_mkdevmap)")
        else:
            need(vma["special"] == 0 and vma["devmap"] == 0, "plain refcounted DAX leaves")
    elif expect == "devdax-pmd":
        need(pages.get("devdax", 0) > 0 and set(pages) == {"devdax"}, f"devdax pages only, got {pages}")
        need(leaves.get("pmd", 0) > 0, f"PMD leaves, got {leaves}")
    elif expect in ("pfnmap-io", "pfnmap-pud"):
        need({"PFNMAP", "IO"} <= flags, f"VM_PFNMAP|VM_IO, got {sorted(flags)}")
        need(set(pages) == {"no-memmap"}, f"BAR memory without struct pages, got {pages}")
        need(vma["special"] == present > 0, f"every leaf special ({vma['special']}/{present})")
        if expect == "pfnmap-pud":
            need(leaves.get("pud", 0) > 0, f"a PUD leaf, got {leaves}")
    elif expect == "pfnmap-ttm":
        need("PFNMAP" in flags, f"VM_PFNMAP, got {sorted(flags)}")
        need(vma["special"] == present > 0, f"every leaf special ({vma['special']}/{present})")
    elif expect == "p2pdma":
        need(pages.get("p2pdma", 0) > 0 and set(pages) == {"p2pdma"}, f"P2PDMA pages only, got {pages}")
        need({"MIXEDMAP", "SHARED"} <= flags and "PFNMAP" not in flags, f"VM_SHARED|VM_MIXEDMAP, got {sorted(flags)}")
        need(vma["special"] == 0 and vma["devmap"] == 0, "plain refcounted P2PDMA PTEs")
    elif expect.startswith("device-private"):
        need(entries.get("device-private", 0) > 0, f"device-private entries, got {entries}")
        level = expect.rpartition("-")[2]
        if level in ("pte", "pmd"):
            levels = {r["level"] for r in vma["runs"] if r["entry"] == "device-private"}
            need(levels == {level}, f"device-private entries at {level} level, got {levels}")
        pages_of_entries = {r["page"] for r in vma["runs"] if r["entry"] == "device-private"}
        need(pages_of_entries == {"device-private"}, f"entries resolve to device-private pages, got {pages_of_entries}")
    elif expect.startswith("device-coherent"):
        # migrate_vma installs coherent pages as plain refcounted anonymous
        # leaves, in private anonymous or private file VMAs (COWed pages);
        # make_device_exclusive() then takes them like RAM.
        what = expect.rpartition("-")[2]
        need("SHARED" not in flags and "MAYSHARE" not in flags, f"a private VMA, got {sorted(flags)}")
        need((vma.get("file") is not None) == (what == "file"), f"file-backed only for -file, got {vma.get('file')}")
        if what == "exclusive":
            need(entries.get("device-exclusive", 0) > 0, f"device-exclusive entries, got {entries}")
            targets = {r["page"] for r in vma["runs"] if r["entry"] == "device-exclusive"}
            need(targets == {"device-coherent"}, f"entries to device-coherent pages, got {targets}")
        else:
            need(pages.get("device-coherent", 0) > 0 and set(pages) == {"device-coherent"},
                 f"device-coherent pages only, got {pages}")
            need(vma["special"] == 0 and vma["devmap"] == 0, "plain leaves")
    else:
        problems.append(f"no expectation written for {expect!r}")
    return problems


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_mapping_classified(lab: LabAudit, scenario: str) -> None:
    """Each held mapping is found with the page kind, leaf level and bits it was created with."""
    for m in lab.mappings(scenario):
        vma = lab.vma(m)
        problems = _check_expectation(m["expect"], vma, lab.docs["qemu"])
        assert not problems, f"{scenario} on {lab.guest.kernel.kver}: {problems}; VMA {vma}"


def test_no_errors_on_clean_guest(lab: LabAudit) -> None:
    """Merged kernel code must produce no error-level finding anywhere in the guest."""
    errors = [f for f in lab.docs["qemu"]["findings"] if f["severity"] == "error"]
    assert not errors, json.dumps(errors, indent=1)


def test_p2pdma_reported_as_mixedmap_abuse(lab: LabAudit) -> None:
    """The merged P2PDMA mmap (vm_insert_page into VM_MIXEDMAP) is Jason's 'abuse of VM_MIXEDMAP': info."""
    vma = lab.vma(lab.mappings("p2pdma")[0])
    hits = [
        f for f in lab.docs["qemu"]["findings"]
        if f["rule"] == "mixedmap-all-struct-pages" and f["vma"]["start"] == vma["start"] and f["pid"] == vma["pid"]
    ]
    assert len(hits) == 1 and hits[0]["severity"] == "info", hits


#: _PAGE_ACCESSED: the snapshots are taken one after the other, and LRU aging
#: (folio_referenced → ptep_clear_flush_young) clears it in between.
_ACCESSED = 1 << 5


def _runs(vma: Dict) -> List[tuple]:
    return [
        (r["start"], r["end"], r["level"], r["entry"], hex(int(r["raw"], 16) & ~_ACCESSED), r["page"])
        for r in vma.get("runs", [])
    ]


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_sources_agree(lab: LabAudit, scenario: str) -> None:
    """QMP, the vmcore and live /proc/kcore see the same VMA flags and raw entries."""
    for m in lab.mappings(scenario):
        ref = lab.vma(m, "qemu")
        for source in ("vmcore", "live"):
            other = lab.vma(m, source)
            assert other["flags"] == ref["flags"], f"{source}: VMA flags differ"
            assert _runs(other) == _runs(ref), f"{source}: raw entries differ from QMP"


def test_four_level_paging() -> None:
    """With LA57 off (-cpu max,-la57) the P4D level is folded; the walk must still find every mapping."""
    from drgn_p2p.lab.kernels import ensure_kernel
    from drgn_p2p.lab.vm import boot

    kernel = ensure_kernel("newest")
    with boot(kernel, scenarios=["anon", "thp", "fsdax", "devdax", "pcibar"], la57=False) as guest:
        check_setup(guest)
        with tempfile.TemporaryDirectory(prefix="drgn-p2p-test-") as tmp:
            code, output = run_audit(guest, "qemu", ["--json", "--runs", "-v"], Path(tmp))
        assert code == 0, output[-3000:]
        doc = _json_from(output)
        assert doc["layout"]["levels"] == 4
        lab4 = LabAudit(guest, {"qemu": doc})
        for scenario in ("anon", "thp", "fsdax", "devdax", "pcibar"):
            for m in lab4.mappings(scenario):
                problems = _check_expectation(m["expect"], lab4.vma(m), doc)
                assert not problems, f"{scenario} with 4-level paging: {problems}"
