# SPDX-License-Identifier: GPL-2.0-or-later
"""
The zoo
-------

Legitimate mappings that kernels and their drivers create through their own
code paths (:data:`drgn_p2p.lab.scenarios.ZOO`), held in the lab's boots
next to the lab's own scenarios, and audited there: each must be classified
as its code path makes it, and the whole clean guest must pass
``audit --fail-on warning`` through QMP, a vmcore and live ``/proc/kcore``.

The lab run (``tests/lab/test_audit.py``) writes one JSON document (schema
:data:`SCHEMA`, one entry per kernel under ``"kernels"``);
:func:`render_markdown` turns it into ``docs/zoo.md`` (``scripts/zoo-matrix``).
"""

import time
from types import SimpleNamespace
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..arch import describe
from ..records import Level
from .proof import _md, merge_kernels, render_main

__all__ = ("SCHEMA", "SHAPES", "CLEAN_INFO", "mapping_record", "clean_record", "kernel_record", "merge",
           "add_alone", "render_markdown")

SCHEMA = "drgn-p2p/zoo/1"

#: How each zoo shape is created: the user-space call and the kernel code that maps it.
SHAPES: Mapping[str, str] = {
    "p2pdma-ro": "`p2pmem/allocate` opened O_RDONLY, MAP_SHARED + PROT_READ: `p2pmem_alloc_mmap()` "
                 "`vm_insert_page()`s P2PDMA pages (VM_MAYSHARE without VM_SHARED)",
    "perf-ring": "`perf_event_open()` software event + mmap of 1+8 pages: `perf_mmap()` "
                 "(fault-in of normal pages; `remap_pfn_range()` at mmap time in 7.x)",
    "packet-ring": "AF_PACKET TPACKET_V3 RX ring bound to lo: `packet_mmap()` `vm_insert_page()`s the ring blocks",
    "io-uring": "`io_uring_setup()` + mmap of the SQ/CQ ring and the SQE array: `vm_insert_pages()`",
    "tcp-zc": "TCP over loopback (MSG_ZEROCOPY sender, 7-page MSS), the receiver mmaps its socket: `tcp_mmap()` "
              "sets VM_MIXEDMAP, `TCP_ZEROCOPY_RECEIVE` `vm_insert_pages()` the received pages",
    "io-uring-pbuf": "`IORING_REGISTER_PBUF_RING` with `IOU_PBUF_RING_MMAP` + mmap: `vm_insert_pages()`",
    "hugetlb": "MAP_HUGETLB 2 MiB (`hugepages=2`): hugetlb fault, PMD leaf",
    "hugetlb-1g": "MAP_HUGETLB|MAP_HUGE_1GB (`hugepagesz=1G hugepages=1`, in a 3.5 GiB guest of its own): "
                  "hugetlb fault, PUD leaf",
    "shmem-thp": "memfd + MADV_HUGEPAGE with `shmem_enabled=advise`: `do_set_pmd()`",
    "ksm": "16 identical anonymous pages, MADV_MERGEABLE, ksmd: read-only PTEs to one KSM page",
    "secretmem": "`memfd_secret()` + mmap: page-cache pages removed from the direct map",
    "uffd-wp": "memfd (shmem), half populated, UFFDIO_WRITEPROTECT: UFFD_WP PTEs and uffd-wp PTE markers",
    "guard": "MADV_GUARD_INSTALL on 4 of 16 anonymous pages: guard PTE markers",
    "guard-shmem": "MADV_GUARD_INSTALL on 4 of 16 pages of a shared memfd (shmem): guard PTE markers",
    "hwpoison": "MADV_HWPOISON on one anonymous page (hwpoison entry), MADV_SOFT_OFFLINE on the next (migrated)",
    "numa-hint": "64 anonymous pages of a two-threaded process with `kernel.numa_balancing=1`: "
                 "`task_numa_work()` `change_prot_numa()`s them into PROT_NONE hinting entries",
    "zswap": "64 anonymous pages, MADV_PAGEOUT with zswap on: `zswap_store()` keeps them, swap entries",
    "pcibar-wc": "2 MiB of a 32 MiB ivshmem BAR 2 through sysfs `resource2_wc`: `io_remap_pfn_range()`, write-combining",
    "uio": "`uio_pci_generic` bound to an ivshmem, `/dev/uioN` map 0 (BAR 0, its registers): "
           "`uio_mmap_physical()` `remap_pfn_range()`s it uncached",
    "udmabuf": "udmabuf of a sealed memfd, mmap of the dma-buf: `vmf_insert_pfn()` into VM_PFNMAP",
    "drm-vgem": "vgem dumb buffer mmapped through the card: GEM shmem `vmf_insert_pfn()`",
    "drm-virtio-gpu": "virtio-gpu dumb buffer mmapped through the card: GEM shmem `vmf_insert_pfn()`",
    "dma-heap": "64 KiB from the DMA-BUF system heap, mmap of the dma-buf: `system_heap_mmap()` "
                "`remap_pfn_range()`s its pages",
    "devmem": "`/dev/mem` at 0xf0000 (BIOS area, STRICT_DEVMEM allows it): `remap_pfn_range()`",
    "vdso": "the holder's own `[vdso]` text and `[vvar]` data after `clock_gettime()`: special mappings "
            "(`vmf_insert_pfn()` into VM_PFNMAP before 7.x, a struct page in VM_MIXEDMAP since)",
    "fbdev": "64 KiB of qxl's `/dev/fbN`, written: DRM fbdev emulation's shadow buffer, "
             "`fb_deferred_io_mmap()` + `fb_deferred_io_fault()` (vmalloc pages)",
}

#: Info-level findings a clean lab guest draws, and why each is legitimate.
CLEAN_INFO: Mapping[str, str] = {
    "mixedmap-all-struct-pages":
        "the merged P2PDMA mmap (p2pdma, p2pdma-ro) vm_insert_page()s ZONE_DEVICE pages into a VMA that "
        "vm_insert_page() marks VM_MIXEDMAP, with no pure PFN in it: Jason Gunthorpe calls this an abuse of "
        "VM_MIXEDMAP; it is merged kernel code, so info only. (VMAs of ordinary pages that vm_insert_page() "
        "made VM_MIXEDMAP, and 7.x's [vvar], do not draw it.)",
}

#: VMA flags every mapping has or that say nothing about the shape; left out of the tables.
_DULL_FLAGS = frozenset({"MAYREAD", "MAYWRITE", "MAYEXEC", "SOFTDIRTY", "ACCOUNT"})


def _layout_view(layout: Mapping[str, Any]) -> SimpleNamespace:
    """What :func:`describe` needs of a layout, from an audit document's ``layout``."""
    return SimpleNamespace(arch=layout.get("arch", "x86_64"), sme_mask=int(layout["sme_mask"], 16),
                           pfn_mask=int(layout["pfn_mask"], 16), devmap_bit=layout["devmap_bit"])


def _bit_sets(vma: Mapping[str, Any], layout: Mapping[str, Any]) -> List[str]:
    """The distinct named bit sets of the VMA's present runs (ACCESSED left out: aging clears it)."""
    view = _layout_view(layout)
    seen: List[str] = []
    for run in vma.get("runs", []):
        if run["entry"] != "present":
            continue
        names, cache = describe(int(run["raw"], 16), Level[run["level"].upper()], view)
        text = " ".join(n for n in names if n != "ACCESSED") + (f" ({cache})" if cache else "")
        if text not in seen:
            seen.append(text)
    return seen


def mapping_record(mapping: Mapping[str, Any], vma: Mapping[str, Any], doc: Mapping[str, Any],
                   problems: Sequence[str]) -> Dict[str, Any]:
    """One held mapping as the audit (*doc*, over QMP) saw it, with its expectation's *problems*."""
    findings = sorted({
        (f["severity"], f["rule"]) for f in doc["findings"]
        if f["pid"] == vma["pid"] and f["vma"]["start"] == vma["start"]
    })
    return {
        "shape": mapping["kind"],
        "expect": mapping["expect"],
        "flags": [f for f in vma["flag_names"] if f not in _DULL_FLAGS],
        "ops": vma["ops"],
        "pages": vma["pages"],
        "entries": vma["entries"],
        "leaves": vma["leaves"],
        "special": vma["special"],
        "devmap": vma["devmap"],
        "bits": _bit_sets(vma, doc["layout"]),
        "findings": [{"severity": s, "rule": r} for s, r in findings],
        "problems": list(problems),
    }


def clean_record(code: int, doc: Mapping[str, Any]) -> Dict[str, Any]:
    """``audit --fail-on warning`` of a whole guest through one source: exit code, counts, info rules."""
    info: Dict[str, int] = {}
    for f in doc["findings"]:
        if f["severity"] == "info":
            info[f["rule"]] = info.get(f["rule"], 0) + 1
    return {"exit": code, "findings": dict(doc["summary"]["findings"]), "info": info}


def kernel_record(kver: str, scenarios: Mapping[str, str], mappings: Sequence[Mapping[str, Any]],
                  clean: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """One kernel's entry: each zoo shape ``held`` or why not, the held mappings, the clean audits."""
    return {
        "kver": kver,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": dict(scenarios),
        "mappings": list(mappings),
        "clean": dict(clean),
    }


#: A zoo shape held in a boot of its own (:attr:`~drgn_p2p.lab.scenarios.Scenario.memory_mib`,
#: :func:`add_alone`); the main boot skips it.
_HELD_ALONE = "held (a boot of its own)"


def _alone_key(source: str, shape: str) -> str:
    return f"{source} ({shape} alone)"


def _keep_alone(old: Optional[Mapping[str, Any]], new: Mapping[str, Any]) -> Mapping[str, Any]:
    """*new* with what *old* recorded of the shapes *new* leaves to a boot of their own."""
    if not old:
        return new
    alone = {s for s, state in old["scenarios"].items() if state == _HELD_ALONE and new["scenarios"].get(s) != "held"}
    if not alone:
        return new
    keys = {_alone_key(src, s) for s in alone for src in ("qemu", "vmcore", "live")}
    return {**new, "scenarios": {**new["scenarios"], **{s: _HELD_ALONE for s in alone}},
            "mappings": list(new["mappings"]) + [r for r in old["mappings"] if r["shape"] in alone],
            "clean": {**new["clean"], **{k: v for k, v in old["clean"].items() if k in keys}}}


def merge(existing: Optional[Mapping[str, Any]], kernels: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """A zoo document with *kernels* replacing those of *existing* (others
    kept); a shape held in a boot of its own keeps what that boot recorded."""
    old = (existing or {}).get("kernels", {})
    kernels = {name: _keep_alone(old.get(name), entry) for name, entry in kernels.items()}
    return {"schema": SCHEMA, "kernels": merge_kernels(existing, kernels, SCHEMA)}


def add_alone(existing: Optional[Mapping[str, Any]], name: str, kver: str, shape: str,
              mappings: Sequence[Mapping[str, Any]], clean: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """*existing* with the boot of its own of zoo shape *shape* on lab kernel
    *name*: its mapping records, and its clean audits per program source."""
    entry = (existing or {}).get("kernels", {}).get(name) or kernel_record(kver, {}, [], {})
    entry = {
        **entry,
        "scenarios": {**entry["scenarios"], shape: _HELD_ALONE},
        "mappings": [r for r in entry["mappings"] if r["shape"] != shape] + list(mappings),
        "clean": {**{k: v for k, v in entry["clean"].items() if not k.endswith(f"({shape} alone)")},
                  **{_alone_key(source, shape): c for source, c in clean.items()}},
    }
    return {"schema": SCHEMA, "kernels": merge_kernels(existing, {name: entry}, SCHEMA)}


def _classified(rec: Mapping[str, Any]) -> str:
    """``ram pte×16, S16`` — page kinds, leaves, special/devmap counts and non-present entries."""
    pages = ", ".join(f"{k} {n}" for k, n in rec["pages"].items()) or "no present page"
    leaves = " ".join(f"{level}×{n}" for level, n in rec["leaves"].items())
    other = ", ".join(f"{k} ×{n}" for k, n in rec["entries"].items() if k != "present")
    marks = [f"special {rec['special']}"] if rec["special"] else []
    marks += [f"devmap {rec['devmap']}"] if rec["devmap"] else []
    return "; ".join(p for p in (pages, leaves, other, ", ".join(marks)) if p)


def _verdict(recs: Sequence[Mapping[str, Any]]) -> str:
    """The findings and expectation problems of a shape's mappings."""
    problems = [p for r in recs for p in r["problems"]]
    if problems:
        return "**WRONG**: " + "; ".join(problems)
    found = sorted({(f["severity"], f["rule"]) for r in recs for f in r["findings"]})
    return ", ".join(f"{s} `{r}`" for s, r in found) or "clean"


def _cell(entry: Mapping[str, Any], shape: str, notes: Dict[str, int]) -> str:
    """A shape's cell of the summary table for one kernel."""
    recs = [r for r in entry["mappings"] if r["shape"] == shape]
    state = entry["scenarios"].get(shape, "not in this run")
    if not recs:
        return f"skipped [{notes.setdefault(state, len(notes) + 1)}]"
    return "held: " + " + ".join(_classified(r) for r in recs) + " — " + _verdict(recs)


def _detail_rows(entry: Mapping[str, Any]) -> List[str]:
    """One table row per held zoo mapping of a kernel."""
    rows = []
    for r in entry["mappings"]:
        if r["shape"] not in SHAPES:
            continue
        bits = " / ".join(f"`{b}`" for b in r["bits"]) or "—"
        cells = [f"`{r['shape']}`", f"`{r['expect']}`", _classified(r), bits, " ".join(r["flags"]), f"`{r['ops']}`" if r["ops"] else "—",
                 _verdict([r])]
        rows.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return rows


def _clean_rows(doc: Mapping[str, Any]) -> List[str]:
    """One row per kernel and program source: the whole-guest ``--fail-on warning`` audit."""
    rows = []
    for name, entry in doc["kernels"].items():
        for source, c in entry["clean"].items():
            counts = c["findings"]
            info = ", ".join(f"`{rule}` ×{n}" for rule, n in sorted(c["info"].items())) or "—"
            rows.append(f"| {name} | {source} | {c['exit']} | {counts.get('error', 0)} / {counts.get('warning', 0)} / "
                        f"{counts.get('info', 0)} | {info} |")
    return rows


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The zoo as a Markdown page (``docs/zoo.md``)."""
    kernels = list(doc["kernels"])
    notes: Dict[str, int] = {}
    out = [
        "# The zoo",
        "",
        "<!-- Generated by scripts/zoo-matrix from the JSON of a lab run (tests/lab/test_audit.py). "
        "Do not edit: regenerate. -->",
        "",
        "Legitimate mappings that kernels and drivers create through their own code paths, held in the lab's "
        "boots next to its own scenarios and audited over QMP (`tests/lab/test_audit.py`). Each cell says how the "
        "audit classified the mapping (page kinds with 4 KiB page counts, present leaves per level, non-present "
        "entries, special/devmap leaves) and what it drew. The expectation each shape is checked against comes "
        "from the kernel code that makes it (see `_ZOO_EXPECTATIONS` in the test); **WRONG** marks a mismatch.",
        "",
        "Kernels: " + ", ".join(f"`{k}` = {doc['kernels'][k]['kver']} ({doc['kernels'][k]['when']})"
                                for k in kernels) + ".",
        "",
        "| shape | created by | " + " | ".join(kernels) + " |",
        "|---|---|" + "---|" * len(kernels),
    ]
    for shape, how in SHAPES.items():
        cells = [_cell(doc["kernels"][k], shape, notes) for k in kernels]
        out.append(f"| `{shape}` | {_md(how)} | " + " | ".join(_md(c) for c in cells) + " |")
    if notes:
        out += ["", "Skipped:", ""] + [f"{n}. {_md(reason)}" for reason, n in notes.items()]
    for name in kernels:
        entry = doc["kernels"][name]
        out += ["", f"## {name}: {entry['kver']}", "",
                "| shape | expected as | classified as | bits of the present leaves (cache mode) | VMA flags | vm_ops "
                "| findings |",
                "|---|---|---|---|---|---|---|"]
        out += _detail_rows(entry)
    out += ["", "## Clean guests", "",
            "Every process of each guest (all lab scenarios and the zoo held) audited with `--fail-on warning`: "
            "the exit code must be 0 through every program source.", "",
            "| kernel | source | exit | error / warning / info | info findings |", "|---|---|---|---|---|"]
    out += _clean_rows(doc)
    out += ["", "Info findings, and why they are legitimate:", ""]
    out += [f"* `{rule}`: {_md(why)}" for rule, why in CLEAN_INFO.items()]
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m drgn_p2p.lab.zoo FILE``: print the Markdown page of a zoo document."""
    return render_main(argv, "python -m drgn_p2p.lab.zoo ZOO.json", SCHEMA, render_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
