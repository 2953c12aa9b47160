# SPDX-License-Identifier: GPL-2.0-or-later
"""
A real kdump: the lab guest boots with ``crashkernel=``, holds the lab's
mappings, is audited over QMP, loads its own kernel as the crash kernel with
kexec-tools and panics (sysrq-c). The crash kernel saves ``/proc/vmcore``
whole (ELF) and filtered by ``makedumpfile -d 31`` (kdump-compressed) and
powers off (:mod:`drgn_p2p.lab.kdump`). Both dumps are audited with the real
command line:

* the whole dump must classify every held mapping as the QMP audit did, with
  the same VMA flags and raw entries, and read every page table;
* the filtered dump must still be audited, and whatever it could not read
  must be marked — an unreadable page table in ``summary.unreadable_tables``
  and ``faults``, a process in ``summary.unreadable_processes`` and
  ``faults``, a struct page as ``memmap_readable: false`` — never left out
  silently. What the filtered audit reports is checked against the audit of
  the whole dump of the same crash.

Whether a struct page is in a dump is checked independently with drgn (a
read of ``pfn_to_page(pfn)->flags``). ZONE_DEVICE struct pages stored on the
device (the ``memmap=`` pmem namespaces) are outside System RAM, hence
outside ``/proc/vmcore`` even unfiltered, although QEMU's dump has them.

One boot and one kdump boot per kernel, about a minute under TCG.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Sequence

import pytest
from audit_docs import check_faults_counted, compare_marked, process_missing_because, runs, same_or_marked, vma_of
from lab_prereq import check_setup, missing

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
KERNELS = ("newest", "6.12", "6.1")
#: Held while the guest crashes (those the kernel supports).
SCENARIOS = ("anon", "thp", "zero-page", "fsdax", "devdax", "pcibar")
#: makedumpfile dump levels: 31 excludes zero, cache, private cache, user and
#: free pages; 23 all but user pages (makedumpfile 1.7.8 cannot tell a slab's
#: tail pages from user pages on 7.x kernels, whose struct page has
#: ``compound_info`` instead of ``compound_head``, so on 7.x -d 31 also drops
#: task_structs and other slab objects; it warns "The kernel version is not
#: supported").
LEVELS = (31, 23)
#: What makedumpfile prints on a kernel newer than it knows.
UNSUPPORTED = "The kernel version is not supported"
#: Page kinds whose PFNs have a struct page.
_MEMMAP_KINDS = {"ram", "zero-page", "huge-zero", "fsdax", "devdax", "device-generic", "p2pdma", "device-private",
                 "device-coherent"}


class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str


def cli(args: Sequence[str], timeout: float = 600) -> Result:
    """``python -m drgn_p2p ARGS`` on the host."""
    proc = subprocess.run([sys.executable, "-m", "drgn_p2p", *args], capture_output=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


def audited(r: Result) -> Dict:
    """The JSON document of an audit that ran (exit 0 or 1, no traceback)."""
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.code in (0, 1), (r.code, r.stderr[-3000:])
    doc = json.loads(r.stdout)
    assert doc["schema"] == "drgn-p2p/audit/1"
    return doc


def one_error(r: Result) -> str:
    """The one ``error:`` line of a failed command (after nothing but warnings, no traceback)."""
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.code == 2 and r.stdout == "", (r.code, r.stderr[-2000:])
    lines = r.stderr.splitlines()
    assert lines and lines[-1].startswith("error: "), r.stderr[-2000:]
    assert all(line.startswith("warning: ") for line in lines[:-1]), r.stderr[-2000:]
    return lines[-1]


@dataclass
class Crash:
    """One kernel's crash: what the guest held, and every audit of it."""

    kver: str
    vmlinux: str
    mappings: List[Dict]
    skipped: Dict[str, str]
    dumps: Dict[str, Path]  # "elf", "d31", "d23"
    docs: Dict[str, Dict] = field(default_factory=dict)  # "qmp", "elf", "d31", "d23"
    pgmaps: Dict[str, List[Dict]] = field(default_factory=dict)
    #: Dumps whose audit failed with one clear error line instead (see :func:`filtered_doc`).
    errors: Dict[str, str] = field(default_factory=dict)
    log: str = ""
    timings: Dict[str, float] = field(default_factory=dict)

    def held(self, kind: str) -> List[Dict]:
        found = [m for m in self.mappings if m["kind"] == kind]
        if not found:
            pytest.skip(f"{kind} not held on {self.kver}: {self.skipped.get(kind, 'not in the manifest')}")
        return found


@pytest.fixture(scope="module", params=KERNELS)
def crash(request, lab_session, tmp_path_factory) -> Iterator[Crash]:
    from drgn_p2p.lab import LabError
    from drgn_p2p.lab.kdump import CRASHKERNEL_CMDLINE, crash_and_capture, ensure_makedumpfile, kexec_binary, \
        load_crash_kernel
    from drgn_p2p.lab.kernels import ensure_kernel
    from drgn_p2p.lab.vm import start

    if shutil.which("qemu-system-x86_64") is None:
        missing("qemu-system-x86_64 is not installed")
    try:
        kexec_binary()
    except LabError as e:
        missing(str(e))
    kernel = ensure_kernel(request.param)
    if kernel.config.get("CONFIG_CRASH_DUMP") != "y":
        pytest.skip(f"{kernel.kver} has no CONFIG_CRASH_DUMP")
    makedumpfile = ensure_makedumpfile()
    lab_session.close()  # at most one guest alive
    tmp = tmp_path_factory.mktemp(f"kdump-{request.param}")
    vmlinux = str(kernel.vmlinux)
    t0 = time.monotonic()
    guest = start(kernel, scenarios=SCENARIOS, extra_cmdline=CRASHKERNEL_CMDLINE)
    timings = {"ready": time.monotonic() - t0}
    try:
        check_setup(guest)
        qemu = ["--qemu", guest.qmp_path, "-s", vmlinux]
        docs = {"qmp": audited(cli(["audit", *qemu, "--json", "--runs", "-v"]))}
        pgmaps = {"qmp": json.loads(cli(["pgmaps", *qemu, "--json"]).stdout)}
        load_crash_kernel(guest, makedumpfile, filters=LEVELS)
        t1 = time.monotonic()
        dumps = crash_and_capture(guest, tmp)
        timings["kdump"] = time.monotonic() - t1
        mappings, skipped = guest.mappings, guest.skipped
    finally:
        guest.close(grace=0)
    try:
        assert dumps.elf is not None and set(LEVELS) <= set(dumps.filtered), dumps.log[-2000:]
        c = Crash(kernel.kver, vmlinux, mappings, skipped,
                  {"elf": dumps.elf, **{f"d{level}": dumps.filtered[level] for level in LEVELS}},
                  docs=docs, pgmaps=pgmaps, log=dumps.log,
                  timings={**timings, **{f"crash kernel {k}": v for k, v in dumps.timings.items()}})
        for name, path in c.dumps.items():
            core = ["-c", str(path), "-s", vmlinux]
            t1 = time.monotonic()
            r = cli(["audit", *core, "--json", "--runs", "-v"])
            c.timings[f"audit {name}"] = time.monotonic() - t1
            if r.code == 2 and name != "elf":
                c.errors[name] = one_error(r)
                continue
            c.docs[name] = audited(r)
            r = cli(["pgmaps", *core, "--json"])
            assert r.code == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
            c.pgmaps[name] = json.loads(r.stdout)
        sizes = {name: f"{path.stat().st_size >> 20} MiB" for name, path in c.dumps.items()}
        print(f"\nkdump {kernel.kver}: {sizes}; " + ", ".join(f"{k} {v:.1f} s" for k, v in c.timings.items()),
              file=sys.stderr)
        yield c
    finally:
        if not os.environ.get("DRGN_P2P_LAB_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kdump {kernel.kver}: dumps kept in {tmp}", file=sys.stderr)


def memmap_in_dump(vmcore: Path, vmlinux: str, pfns: Sequence[int]) -> Dict[int, bool]:
    """Whether each PFN's struct page can be read from *vmcore* (drgn, directly)."""
    import drgn
    from drgn.helpers.linux.mm import pfn_to_page

    prog = drgn.Program()
    prog.set_core_dump(str(vmcore))
    prog.load_debug_info([vmlinux])
    result = {}
    for pfn in pfns:
        try:
            pfn_to_page(prog, pfn).flags.read_()
            result[pfn] = True
        except drgn.FaultError:
            result[pfn] = False
    return result


def check_memmap_marked(c: Crash, name: str) -> Dict[str, int]:
    """Every run whose struct page is not in the dump says ``memmap_readable: false``, and
    every pgmap whose first struct page is not says so too. Returns counts by verdict."""
    doc = c.docs[name]
    pfns = {int(r["pfn"], 16) for v in doc["vmas"] for r in v.get("runs", [])
            if r["page"] in _MEMMAP_KINDS and r["pfn"]}
    pfns |= {int(p["start"], 16) >> 12 for p in c.pgmaps[name]}
    readable = memmap_in_dump(c.dumps[name], c.vmlinux, sorted(pfns))
    wrong = []
    counts = {"readable": 0, "unreadable": 0}
    for v in doc["vmas"]:
        for r in v.get("runs", []):
            if r["page"] in _MEMMAP_KINDS and r["pfn"]:
                truth = readable[int(r["pfn"], 16)]
                counts["readable" if truth else "unreadable"] += 1
                if r["memmap_readable"] != truth:
                    wrong.append((v["pid"], v["comm"], r))
    for p in c.pgmaps[name]:
        if p["memmap_readable"] != readable[int(p["start"], 16) >> 12]:
            wrong.append(("pgmap", p))
    assert not wrong, f"{name}: memmap_readable disagrees with the dump: {wrong[:5]}"
    return counts


# -- the whole /proc/vmcore ---------------------------------------------------------


def test_crash_kernel_saved_both_dumps(crash: Crash) -> None:
    assert "makedumpfile Completed" in crash.log, crash.log[-2000:]
    for path in crash.dumps.values():
        assert path.stat().st_size > 1 << 20


def test_whole_dump_reads_every_page_table(crash: Crash) -> None:
    doc = crash.docs["elf"]
    assert doc["summary"]["unreadable_tables"] == 0 and doc["summary"]["unreadable_processes"] == 0
    assert doc["faults"] == []
    assert doc["summary"]["findings"]["error"] == 0, [f for f in doc["findings"] if f["severity"] == "error"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_whole_dump_classifies_like_qmp(crash: Crash, scenario: str) -> None:
    """Every held mapping: the same VMA flags, page kinds, leaf levels, special and devmap
    counts, and raw entries as the QMP audit just before the crash."""
    for m in crash.held(scenario):
        ref = vma_of(crash.docs["qmp"], int(m["pid"]), int(m["addr"]))
        got = vma_of(crash.docs["elf"], int(m["pid"]), int(m["addr"]))
        assert ref is not None and got is not None, f"{scenario}: VMA missing (qmp {ref is not None})"
        for key in ("flags", "flag_names", "pages", "entries", "leaves", "special", "devmap", "unreadable_tables"):
            assert got[key] == ref[key], f"{scenario} on {crash.kver}: {key} {got[key]} != QMP {ref[key]}"
        assert runs(got) == runs(ref), f"{scenario} on {crash.kver}: raw entries differ from QMP"


def test_whole_dump_marks_struct_pages_it_lacks(crash: Crash) -> None:
    counts = check_memmap_marked(crash, "elf")
    print(f"\n{crash.kver} whole dump: runs with struct pages {counts}", file=sys.stderr)


# -- makedumpfile -d 31 and -d 23 -----------------------------------------------------


def filtered_doc(c: Crash, level: int) -> Dict:
    """The audit of the ``-d LEVEL`` dump, which must exist at every level on every
    kernel: ``-d 23`` keeps slab and user pages, and a ``-d 31`` dump of a kernel
    makedumpfile does not support (7.x: slab pages dropped with the user pages) is
    audited with the cut task list and pgmap table counted, never refused."""
    name = f"d{level}"
    assert name not in c.errors, f"-d {level} on {c.kver} was not audited: {c.errors[name]}"
    return c.docs[name]


@pytest.mark.parametrize("level", LEVELS)
def test_filtered_dump_is_audited(crash: Crash, level: int) -> None:
    doc = filtered_doc(crash, level)
    check_faults_counted(doc)
    check_faults_counted(crash.docs["elf"])
    print(f"\n{crash.kver} -d {level}: summary {doc['summary']}; faults {doc['faults'][:3]}", file=sys.stderr)
    if level == 23 or UNSUPPORTED not in crash.log:
        # -d 23 keeps slab and user pages on every kernel, and a makedumpfile that
        # knows the kernel filters out no page table and no process at -d 31 either.
        assert doc["summary"]["processes"] == crash.docs["elf"]["summary"]["processes"]
        assert doc["summary"]["unreadable_processes"] == 0, doc["faults"][:5]


@pytest.mark.parametrize("level", LEVELS)
def test_filtered_dump_marks_what_it_cannot_read(crash: Crash, level: int) -> None:
    """Each VMA of the whole dump is, in the filtered dump, the same (flags and raw
    entries), or has unreadable page tables counted, or belongs to a process
    that could not be read and is counted; nothing goes missing unmarked."""
    whole, filtered = crash.docs["elf"], filtered_doc(crash, level)
    same, marked_tables, marked_processes, problems = compare_marked(whole, filtered)
    print(f"\n{crash.kver} -d {level}: {same} VMAs as in the whole dump, {marked_tables} with unreadable tables, "
          f"{marked_processes} of unreadable processes", file=sys.stderr)
    assert not problems, problems[:10]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_filtered_dump_held_mapping_classified_or_marked(crash: Crash, scenario: str, level: int) -> None:
    filtered = filtered_doc(crash, level)
    for m in crash.held(scenario):
        ref = vma_of(crash.docs["elf"], int(m["pid"]), int(m["addr"]))
        got = vma_of(filtered, int(m["pid"]), int(m["addr"]))
        if got is None:
            assert process_missing_because(filtered, int(m["pid"])), f"{scenario}: missing, unmarked"
            print(f"\n{crash.kver} -d {level}: {scenario} not seen; marked: "
                  f"{[f['message'] for f in filtered['faults'] if f['pid'] is None][:1]}", file=sys.stderr)
        elif got["unreadable_tables"] == 0:
            assert same_or_marked(got, ref, filtered), f"{scenario}: differs, unmarked"
            assert sum(got["pages"].values()) == sum(ref["pages"].values()), f"{scenario}: differs, unmarked"


@pytest.mark.parametrize("level", LEVELS)
def test_filtered_dump_marks_struct_pages_it_lacks(crash: Crash, level: int) -> None:
    filtered_doc(crash, level)
    counts = check_memmap_marked(crash, f"d{level}")
    print(f"\n{crash.kver} -d {level}: runs with struct pages {counts}", file=sys.stderr)


def test_whole_dump_finds_the_qmp_pgmaps(crash: Crash) -> None:
    """The same dev_pagemaps (type, range, owner) as over QMP, and the same mappers."""
    key = lambda p: (p["type"], p["start"], p["end"], p["owner"], p["mapped_by"])  # noqa: E731
    assert sorted(map(key, crash.pgmaps["elf"])) == sorted(map(key, crash.pgmaps["qmp"]))
