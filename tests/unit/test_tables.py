# SPDX-License-Identifier: GPL-2.0-or-later
"""Text tables keep every address on one line, at 150 columns and in a CI
log (a console that is not a terminal), however long the other cells are;
``explain`` lists the rules that fired and counts the others."""

import io
import re
from typing import Callable

import pytest
from rich.console import Console

from drgn_p2p.explain import print_explanation
from drgn_p2p.gup import predict, segments, vma_shape
from drgn_p2p.pipeline import AuditResult, VmaReport
from drgn_p2p.records import NO_FOLIO_FACTS, PageKind
from drgn_p2p.report import print_audit, print_maps, print_pgmaps

from .layouts import leaf, make_layout, make_vma, run, vm

L72 = make_layout((7, 2))
#: A 48-bit range as a user process has them.
START, END = 0x7F0D_019A_3000, 0x7F0D_019A_7000
#: A 57-bit (LA57) range: the longest an x86-64 user address gets.
START57, END57 = 0x00FF_FF0D_019A_3000, 0x00FF_FF0D_019A_7000


def _result() -> AuditResult:
    reports = []
    for start, end, path in ((START, END, "/mnt/" + "pmem-with-a-long-name/" * 4 + "file"),
                             (START57, END57, None)):
        vma = make_vma(vm(L72, "READ", "WRITE", "SHARED", "MAYREAD", "MAYWRITE", "MAYSHARE", "PFNMAP", "IO",
                          "DONTEXPAND", "DONTDUMP", "SYNC", "HUGEPAGE"), start=start, end=end, file=path)
        reports.append(VmaReport(
            vma=vma,
            pages_by_kind=(("device-private", 512), ("fsdax", 4096), ("no-memmap", 16), ("ram", 1)),
            entries_by_kind=(("device-private", 1), ("migration", 3), ("present", 16), ("swap", 12)),
            leaves_by_level=(("pmd", 8), ("pte", 16), ("pud", 1)),
            special=16, devmap=0, unreadable_tables=0, pages_by_pgmap=((0xFFFF_8880_0412_3400, 16),),
            runs=(run(vma, leaf(va=start, pfn=0xFD000, special=True), PageKind.NO_MEMMAP, count=4),),
            gup=segments(L72, vma_shape(vma), start, end,
                         [(start + 0x1000, start + 0x2000, leaf(va=start, pfn=0xFD000, special=True), PageKind.NO_MEMMAP,
                           NO_FOLIO_FACTS)]),
        ))
    result = AuditResult(layout=L72, vmas=reports)
    result.stats.processes, result.stats.vmas = 1, 2
    return result


def _pgmap_rows():
    return [{
        "pgmap": hex(0xFFFF_8880_0412_3400 + i), "type": "MEMORY_DEVICE_PCI_P2PDMA",
        "start": hex(0x1_8002_0000 + (i << 30)), "end": hex(0x1_8402_0000 + (i << 30)), "pages": 16384,
        "owner": "0000:00:05.0 nvme p2pmem with a long owner name", "ops": "p2pdma_pgmap_ops",
        "memmap_readable": bool(i), "mapped_by": {"1234/p2p-holder-process": 512, "99/other": 2},
    } for i in range(2)]


def _render(width: int, func: Callable, *args) -> str:
    buf = io.StringIO()  # not a terminal, as in a CI log
    func(Console(file=buf, width=width, color_system=None), *args)
    return buf.getvalue()


RENDERERS = {
    "audit": lambda: (print_audit, _result(), L72, True),
    "maps": lambda: (print_maps, _result(), 1234),
    "pgmaps": lambda: (print_pgmaps, _pgmap_rows()),
}


@pytest.mark.parametrize("width", [150, 160, 120])
@pytest.mark.parametrize("command", sorted(RENDERERS))
def test_address_ranges_never_wrap(command: str, width: int) -> None:
    func, *args = RENDERERS[command]()
    text = _render(width, func, *args)
    assert max(len(line) for line in text.splitlines()) <= width
    if command == "pgmaps":
        wanted = [f"{r['start']}-{r['end']}" for r in _pgmap_rows()] + [r["pgmap"] for r in _pgmap_rows()]
    elif command == "audit":
        # The VMA ranges in the table, and the GUP line's mapped segment.
        wanted = [f"{START:#x}-{END:#x}", f"{START57:#x}-{END57:#x}", f"{START + 0x1000:#x}-{START + 0x2000:#x}"]
    else:
        wanted = [f"{START:#x}-{END:#x}", f"{START57:#x}-{END57:#x}"]
    for address in wanted:
        assert address in text, (address, text)
    # No line holds a piece of an address cut at the table's edge.
    assert not re.search(r"0x[0-9a-f]+│\s*$", text, re.M)


def _explain_doc(verdicts):
    return {
        "pid": 1234, "comm": "holder", "address": hex(START),
        "vma": {"start": hex(START), "end": hex(END), "flags": "0xfb", "flag_names": ["READ"], "file": None, "ops": None},
        "walk": [{"level": "pte", "entry_phys": "0x1234567000", "raw": "0x8000000184000277", "bits": ["PRESENT"], "cache": "UC"}],
        "leaf": {"kind": "present", "level": "pte", "pfn": "0x184000", "special": False, "devmap": False,
                 "writable": True, "swap_type": None, "page_kind": "no-memmap", "pgmap": None, "owner": None,
                 "memmap_readable": True, "zone": None},
        "rules": [{"rule": f"rule-{i}", "verdict": v, "message": f"why {i}" if v != "ok" else None}
                  for i, v in enumerate(verdicts)],
        "gup": _pcibar_gup(),
    }


def _pcibar_gup():
    """The GUP prediction of a special PTE of a PCI BAR mmap (sysfs resourceN)."""
    vma = make_vma(vm(L72, "READ", "WRITE", "SHARED", "MAYREAD", "MAYWRITE", "MAYSHARE", "PFNMAP", "IO"),
                   file="/sys/devices/pci0000:00/0000:00:04.0/resource2")
    vma = vma.__class__(**{**vma.__dict__, "ops": "kernfs_vm_ops", "access": "kernfs_vma_access"})
    preds = predict(L72, vma_shape(vma), leaf(pfn=0xFD000, special=True), PageKind.NO_MEMMAP)
    return {p.user: p.as_dict() for p in preds}


def test_explain_shows_the_gup_prediction_with_the_deciding_function() -> None:
    text = _render(150, print_explanation, _explain_doc(["ok"] * 3))
    assert "GUP prediction" in text
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in text.splitlines() if line.count("│") >= 5 and line.split("│")[1].strip()}
    # check_vma_flags() refuses VM_IO|VM_PFNMAP; /proc/PID/mem falls back to
    # kernfs_vma_access() → pci_phys_vm_ops.access = generic_access_phys().
    assert rows["odirect-read"] == ["EFAULT", "check_vma_flags"]
    assert rows["pin"] == ["refuse", "check_vma_flags"]
    assert rows["gup-fast"] == ["fallback", "gup_fast_pte_range"]
    assert rows["proc-pid-mem"] == ["ok", "generic_access_phys"]
    assert "VM_IO|VM_PFNMAP" in text


def test_explain_lists_the_rules_that_fired_and_counts_the_others() -> None:
    text = _render(150, print_explanation, _explain_doc(["ok"] * 20 + ["error", "not applicable", "warning"]))
    assert "rule-20: why 20" in text and "rule-22: why 22" in text
    assert "rule-0" not in text and "rule-21" not in text
    assert "2 rules fired on this leaf; 20 others passed, 1 do not apply" in text


def test_explain_with_nothing_fired() -> None:
    text = _render(150, print_explanation, _explain_doc(["ok"] * 3))
    assert "No rules fired on this leaf; 3 others passed, 0 do not apply" in text
    assert "rule-" not in text
