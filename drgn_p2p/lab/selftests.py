# SPDX-License-Identifier: GPL-2.0-or-later
"""
The kernel's mm selftests as workloads
--------------------------------------

The programs of ``tools/testing/selftests/mm`` (``selftests/vm`` before
6.3, commit baa489fabd01) exercise what the mm maintainers think worth
testing: device-private migration (hmm-tests), userfaultfd, KSM, guard
regions, mremap, PAGEMAP_SCAN, COW of every kind of page, secretmem. Run in a
lab guest, they make and tear down page-table shapes that none of the lab's
own scenarios hold; the audits that run while they do must stay silent, and
any finding they draw must be a real kernel defect or a rule to fix.

:func:`build` compiles them for one lab kernel from that kernel's own
``linux-source-X.Y`` package, against the uapi headers of the kernel's own
``linux-libc-dev`` (the same upload), statically (the guest shares the
host's root, whose glibc may be older than the suite's), in the kernel's
suite chroot with the kernel's gcc (see :mod:`drgn_p2p.lab.kmod`). libnuma,
libcap and liburing, which some tests link, come from the suite as well.

:func:`run` starts them one after another in a booted guest (the guest side
is ``guest/selftests.sh``) and audits the guest over and over while they run:
``drgn-p2p audit --fail-on warning`` over QMP from the host and live through
``/proc/kcore`` in the guest, alternately. It returns a :class:`Run` with
each test's exit status, every audit, the findings and what the tests had
mapped (page and entry kinds of their VMAs, as the audit classified them).

:data:`SELFTESTS` is the catalogue; a test runs on a kernel when its source
is in the kernel's tree, its config options are set and its tier is
wanted: ``core`` everywhere, ``full`` only on the newest lab kernel (see
:data:`TIERS`), to keep the lab within its time budget.
"""

import json
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from drgn_p2p.lab import LabError, apt
from drgn_p2p.lab.kmod import (_MARKER, _chroot, _digest, _ensure_chroot_locked, _kernel_facts, _lock, _need_root,
                               _proc_mounted, _remove_tree, _source_package, _step, chroots_dir, kmods_dir)
from drgn_p2p.lab.scenarios import GUEST_DIR, kernel_config

__all__ = ("SCHEMA", "SELFTESTS", "TIERS", "Selftest", "TestResult", "Audit", "Run", "build", "run", "select",
           "run_selftests", "parse_totals", "mapped_by_test", "attribute", "kernel_record", "merge",
           "render_markdown", "main")

SCHEMA = "drgn-p2p/selftests/1"

#: Bumped when the build recipe changes in a way the key cannot see.
RECIPE = 1

#: Tiers: ``core`` runs on every lab kernel, ``full`` adds the rest on the newest.
TIERS = ("core", "full")


@dataclass(frozen=True)
class Selftest:
    """One run of one mm selftest program."""

    #: Name of the run (unique), e.g. ``uffd-stress-anon``.
    name: str
    #: The program, by the names it has had (the first one the kernel's tree has is used).
    programs: Tuple[str, ...]
    #: Its arguments.
    args: Tuple[str, ...] = ()
    #: ``core`` or ``full``.
    tier: str = "core"
    #: Seconds the guest gives it (then kills it: status 124).
    timeout: int = 300
    #: Config options (``=y``) it needs to do anything; without them it is not run.
    needs: Tuple[str, ...] = ()
    #: Needs test_hmm loaded (the lab's ``device-private`` scenario).
    test_hmm: bool = False
    #: What it maps, in words.
    what: str = ""

    def argv(self, program: str) -> List[str]:
        return [program, *self.args]


#: The catalogue, in the order the guest runs them. Arguments are those of
#: the kernel's own ``run_vmtests.sh`` where it gives any.
SELFTESTS: Tuple[Selftest, ...] = (
    Selftest("hmm-tests", ("hmm-tests",), needs=("CONFIG_DEVICE_PRIVATE",), test_hmm=True, timeout=900,
             what="test_hmm's dmirror devices: migration to DEVICE_PRIVATE (and DEVICE_COHERENT) memory and back, "
                  "device-exclusive entries, hmm_range_fault snapshots"),
    Selftest("gup_test", ("gup_test",), ("-u", "-n", "1"),
             what="pin_user_pages() through /sys/kernel/debug/gup_test, which only CONFIG_GUP_TEST provides: "
                  "Debian kernels lack it, so the test maps its buffer and skips"),
    Selftest("guard-regions", ("guard-regions",), timeout=600,
             what="MADV_GUARD_INSTALL/REMOVE on anonymous, shmem and file mappings (6.13+): guard PTE markers"),
    Selftest("mremap_test", ("mremap_test",),
             what="mremap() moves of PTE, PMD and PUD aligned regions, overlapping and not"),
    Selftest("mremap_dontunmap", ("mremap_dontunmap",), what="MREMAP_DONTUNMAP of anonymous and shared mappings"),
    Selftest("pagemap_ioctl", ("pagemap_ioctl",), timeout=600,
             what="PAGEMAP_SCAN and soft-dirty/uffd-wp async tracking (6.7+): uffd-wp markers, THP, hugetlb"),
    Selftest("madv_populate", ("madv_populate",), what="MADV_POPULATE_READ/WRITE on anonymous, shared and PROT_NONE memory"),
    Selftest("memfd_secret", ("memfd_secret",), needs=("CONFIG_SECRETMEM",),
             what="memfd_secret() pages, removed from the direct map"),
    Selftest("ksm_tests", ("ksm_tests",), ("-M", "-p", "10"), needs=("CONFIG_KSM",),
             what="10 identical pages merged by ksmd: KSM pages"),
    # The whole of uffd-unit-tests takes more than 10 minutes under TCG: its move and poison cases here,
    # its write-protect cases in the full tier.
    Selftest("uffd-unit-tests-move", ("uffd-unit-tests",), ("-f", "move"), needs=("CONFIG_USERFAULTFD",),
             what="UFFDIO_MOVE of anonymous PTEs and PMDs between VMAs (6.8+; skipped before)"),
    Selftest("uffd-unit-tests-poison", ("uffd-unit-tests",), ("-f", "poison"), needs=("CONFIG_USERFAULTFD",),
             what="UFFDIO_POISON: poison PTE markers on anon, shmem and hugetlb"),
    Selftest("uffd-stress-anon", ("uffd-stress", "userfaultfd"), ("anon", "20", "16"), needs=("CONFIG_USERFAULTFD",),
             what="userfaultfd stress on 20 MiB of anonymous memory, 16 bounces"),
    # 16 MiB, not its default 256 MiB: guest/selftests.sh reserves 32 huge pages.
    Selftest("map_hugetlb", ("map_hugetlb", "hugetlb-mmap"), ("16",), needs=("CONFIG_HUGETLBFS",),
             what="MAP_HUGETLB mappings: hugetlb PMD leaves"),
    Selftest("soft-dirty", ("soft-dirty",), what="soft-dirty bits cleared through clear_refs and set again, THP too"),
    Selftest("mlock2-tests", ("mlock2-tests",), what="mlock2(MLOCK_ONFAULT) and munlock"),
    Selftest("mkdirty", ("mkdirty",), what="PTEs and PMDs made dirty by ptrace, mprotect and uffd paths"),
    # 62 s alone under TCG, over 20 minutes next to the audits on a loaded host: capped.
    Selftest("cow", ("cow",), tier="full", timeout=300,
             what="COW of anon, THP, hugetlb, KSM and zero pages across fork, vmsplice and R/O pins"),
    Selftest("uffd-stress-shmem", ("uffd-stress",), ("shmem", "20", "16"), tier="full", needs=("CONFIG_USERFAULTFD",),
             what="userfaultfd stress on 20 MiB of shmem, 16 bounces"),
    Selftest("uffd-unit-tests-wp", ("uffd-unit-tests",), ("-f", "wp"), tier="full", needs=("CONFIG_USERFAULTFD",),
             timeout=300, what="userfaultfd write-protect: uffd-wp bits and markers across fork, pins, minor faults"),
    Selftest("uffd-wp-mremap", ("uffd-wp-mremap",), tier="full", needs=("CONFIG_USERFAULTFD",),
             what="mremap() of uffd-wp protected PTEs, PMDs and markers"),
    Selftest("ksm_functional_tests", ("ksm_functional_tests",), tier="full", needs=("CONFIG_KSM",), timeout=300,
             what="KSM unmerging, zero-page merging, fork and prctl"),
    Selftest("migration", ("migration",), tier="full", needs=("CONFIG_MIGRATION",),
             what="move_pages() between NUMA nodes (the lab guest has one node: every case skips)"),
    Selftest("hugetlb-madvise", ("hugetlb-madvise",), tier="full", needs=("CONFIG_HUGETLBFS",),
             what="MADV_DONTNEED/REMOVE on hugetlb mappings"),
    Selftest("pfnmap", ("pfnmap",), tier="full",
             what="/dev/mem PFNMAP mappings of the BIOS area: mremap, fork, munmap"),
    Selftest("merge", ("merge",), tier="full", what="VMA merging across mremap, mprotect, uffd and KSM"),
    Selftest("process_madv", ("process_madv",), tier="full", what="process_madvise() of another process's memory"),
    Selftest("droppable", ("droppable",), tier="full", what="MAP_DROPPABLE memory reclaimed under pressure"),
    Selftest("khugepaged", ("khugepaged",), ("-s", "2"), tier="full", timeout=300,
             what="khugepaged collapse of anonymous PTE tables into THPs"),
    Selftest("transhuge-stress", ("transhuge-stress",), ("-d", "20"), tier="full",
             what="20 s of THP allocation and splitting"),
)

_BY_NAME = {t.name: t for t in SELFTESTS}

#: Packages whose static libraries some tests link (``-lnuma``, ``-lcap``, ``-luring``).
LIB_PACKAGES = ("libnuma-dev", "libcap-dev", "liburing-dev")

#: The selftest directory of the tree: ``mm`` since 6.3, ``vm`` before.
_DIRS = ("mm", "vm")


def _tier_of(kernel: Any) -> str:
    return "full" if getattr(kernel, "name", None) == "newest" else "core"


def select(kernel: Any, programs: Sequence[str], tier: Optional[str] = None,
           test_hmm: bool = False) -> Tuple[List[Tuple[Selftest, str]], Dict[str, str]]:
    """
    Which selftests run on *kernel*: ``([(test, program)], {name: why not})``.

    :param programs: The programs the kernel's tree has (from :func:`build`).
    :param tier: ``core`` or ``full``; default ``full`` on the newest lab kernel, ``core`` elsewhere.
    :param test_hmm: Whether the guest has test_hmm loaded.
    """
    tier = tier or _tier_of(kernel)
    if tier not in TIERS:
        raise LabError(f"unknown tier {tier!r}: one of {', '.join(TIERS)}")
    config = kernel_config(kernel)
    have = set(programs)
    chosen: List[Tuple[Selftest, str]] = []
    skipped: Dict[str, str] = {}
    for t in SELFTESTS:
        program = next((p for p in t.programs if p in have), None)
        missing = [opt for opt in t.needs if config.get(opt) not in ("y", "m")]
        if TIERS.index(t.tier) > TIERS.index(tier):
            skipped[t.name] = f"tier {t.tier} (this run: {tier})"
        elif program is None:
            skipped[t.name] = f"not in this kernel's selftests ({' or '.join(t.programs)})"
        elif missing:
            skipped[t.name] = f"kernel lacks {', '.join(missing)}"
        elif t.test_hmm and not test_hmm:
            skipped[t.name] = "test_hmm is not loaded (the device-private scenario does not run)"
        else:
            chosen.append((t, program))
    return chosen, skipped


# ---------------------------------------------------------------- building


def _programs_wanted() -> List[str]:
    return sorted({p for t in SELFTESTS for p in t.programs})


def _sysroot_packages(kver: str, suite: str, version: str) -> List[str]:
    """The kernel's own linux-libc-dev (its uapi headers) and the suite's libraries."""
    libc_dev = "linux-libc-dev"
    use = version if any(c.version == version for c in apt.madison(libc_dev)) else apt.version_in(libc_dev, suite)
    if use is None:
        raise LabError(f"{suite} offers no {libc_dev}")
    return [f"{libc_dev}={use}", *(f"{p}/{suite}" for p in LIB_PACKAGES)]


def _extract_tree(deb: Path, package: str, dest: Path) -> None:
    """Extract the parts of the linux-source tarball the mm selftests build from into *dest*."""
    tarball = f"./usr/src/{package}.tar.xz"
    members = [f"{package}/tools/*", f"{package}/include/vdso/*", f"{package}/mm/gup_test.h",
               f"{package}/lib/test_hmm_uapi.h"]
    script = 'dpkg-deb --fsys-tarfile "$1" | tar -xO --occurrence=1 "$2" | tar -xJ -C "$3" --wildcards "${@:4}"'
    # tar exits 2 when a member is missing (test_hmm_uapi.h in old trees): check the tree instead.
    subprocess.run(["bash", "-c", script, "sh", str(deb), tarball, str(dest), *members],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not (dest / package / "tools" / "testing" / "selftests").is_dir():
        raise LabError(f"{deb.name} holds no tools/testing/selftests")


def _build_log_reason(log: str, program: str) -> str:
    """The first compiler error about *program* in the make log."""
    for line in log.splitlines():
        if "error" in line.lower() and (program in line or "fatal" in line):
            return line.strip()
    return "make built no binary"


def build(kernel: Any, timings: Optional[Dict[str, float]] = None) -> Tuple[Path, Dict[str, str]]:
    """
    Build every program of :data:`SELFTESTS` the kernel's tree has and return
    ``(directory of the binaries, {program: why it did not build})``, cached
    in ``kmods_dir()/<KVER>/selftests-<key>/``.
    """
    kver, suite, cc, version = _kernel_facts(kernel)
    timings = {} if timings is None else timings
    programs = _programs_wanted()
    key = _digest({"programs": " ".join(programs).encode(), "libs": " ".join(LIB_PACKAGES).encode()},
                  "selftests", str(RECIPE), kver, cc, version)
    out = kmods_dir() / kver / f"selftests-{key}"
    marker = out / _MARKER
    if marker.is_file():
        return out / "bin", json.loads(marker.read_text())["failed"]

    _need_root()
    start = time.monotonic()
    package = _source_package(kver)
    use = apt.version_in(package, suite)
    if use is None:
        raise LabError(f"{suite} offers no {package}")
    with _lock(chroots_dir() / f"{suite}.lock"):
        root = _ensure_chroot_locked(suite, cc, timings)
        _remove_tree(out)
        (out / "bin").mkdir(parents=True)
        log = out / "build.log"
        work = root / "build" / f"{kver}-selftests-{key}"
        _remove_tree(work)
        work.mkdir(parents=True)
        try:
            with _step(f"download {package} and the uapi headers", timings):
                debs = apt.download([f"{package}={use}", *_sysroot_packages(kver, suite, version)], work / "debs")
            with _step("extract the mm selftests", timings):
                _extract_tree(debs[0], package, work)
                for deb in debs[1:]:
                    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "sysroot")], check=True)
            tree = work / package / "tools" / "testing" / "selftests"
            sub = next((d for d in _DIRS if (tree / d / "Makefile").is_file()), None)
            if sub is None:
                raise LabError(f"{package} has no tools/testing/selftests/mm (or vm)")
            have = [p for p in programs if (tree / sub / f"{p}.c").is_file()]
            inside = f"/{work.relative_to(root)}"
            usr = f"{inside}/sysroot/usr"
            argv = ["make", "-C", f"{inside}/{package}/tools/testing/selftests/{sub}", "-k", "-j2", f"CC={cc}",
                    f"OUTPUT={inside}/out",
                    f"KHDR_INCLUDES=-isystem {usr}/include -isystem {usr}/include/x86_64-linux-gnu",
                    f"EXTRA_CFLAGS=-L{usr}/lib/x86_64-linux-gnu", "LDFLAGS=-static",
                    *(f"{inside}/out/{p}" for p in have)]
            (work / "out").mkdir()
            with _step(f"compile {len(have)} mm selftests", timings), _proc_mounted(root):
                try:
                    _chroot(root, argv, log=log)
                except LabError:
                    pass  # -k: what did build is used; what did not is reported below
            text = log.read_text(errors="replace")
            failed: Dict[str, str] = {}
            for p in have:
                built = work / "out" / p
                if built.is_file():
                    shutil.copy2(built, out / "bin" / p)
                else:
                    failed[p] = _build_log_reason(text, p)
        finally:
            _remove_tree(work)
    marker.write_text(json.dumps({"kver": kver, "cc": cc, "source": f"{package}={use}", "failed": failed,
                                  "seconds": round(time.monotonic() - start, 1)}) + "\n")
    return out / "bin", failed


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class TestResult:
    """How one selftest ended in the guest."""

    name: str
    command: str
    #: Exit status (0 pass, 4 skip (KSFT_SKIP), 124/137 killed at its timeout, else failed).
    status: int
    seconds: float
    #: The kselftest totals line (``pass:N fail:N ...``), when it printed one.
    totals: str = ""

    @property
    def verdict(self) -> str:
        return {0: "pass", 4: "skip", 124: "timeout", 137: "timeout"}.get(self.status, "fail")


@dataclass(frozen=True)
class Audit:
    """One audit taken while the selftests ran."""

    via: str
    #: Seconds since the selftests started.
    at: float
    seconds: float
    exit_code: int
    #: The selftests running when the audit started and when it ended.
    running: Tuple[str, ...]
    #: ``(rule, severity, comm, pid, start, message)`` of every finding.
    findings: Tuple[Tuple[str, str, str, int, str, str], ...]
    #: The audit's error line when it exited 2.
    error: str = ""
    #: Findings a second read did not confirm (the mapping changed while read).
    withdrawn: int = 0


@dataclass(frozen=True)
class Run:
    """A selftest run on one kernel."""

    kver: str
    tier: str
    tests: Tuple[TestResult, ...]
    #: Selftests not run, with the reason.
    skipped: Mapping[str, str]
    audits: Tuple[Audit, ...]
    #: comm → {"pages": {kind: most pages seen}, "entries": {kind: most}, "flags": [flag sets]}.
    mapped: Mapping[str, Any]
    timings: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


_TOTALS = re.compile(r"Totals:\s*(pass:\d+.*)")


def parse_totals(log: str) -> str:
    """The last kselftest ``# Totals: pass:N fail:N xfail:N xpass:N skip:N error:N`` of *log* (or "")."""
    found = _TOTALS.findall(log)
    return " ".join(found[-1].split()) if found else ""


def _comm(program: str) -> str:
    """The comm of a program (TASK_COMM_LEN: 15 characters)."""
    return program[:15]


def mapped_by_test(doc: Mapping[str, Any], comms: Sequence[str], into: Dict[str, Any]) -> None:
    """
    Fold what the processes named *comms* map (the ``vmas`` of an audit
    document, with ``-v``) into *into*: per comm (two runs of one program share it), the most pages of each page
    kind and entries of each entry kind seen in one audit, and every set of
    VMA flags beyond the plain ones that their present leaves sat in.
    """
    wanted = set(comms)
    per: Dict[str, Dict[str, Dict[str, int]]] = {}
    for vma in doc.get("vmas", []):
        comm = vma.get("comm")
        if comm not in wanted:
            continue
        acc = per.setdefault(comm, {"pages": {}, "entries": {}})
        for kind, n in (vma.get("pages") or {}).items():
            acc["pages"][kind] = acc["pages"].get(kind, 0) + int(n)
        for kind, n in (vma.get("entries") or {}).items():
            if kind != "present":
                acc["entries"][kind] = acc["entries"].get(kind, 0) + int(n)
        notable = sorted(f for f in vma.get("flag_names", []) if f in _NOTABLE_FLAGS)
        if notable and (vma.get("pages") or vma.get("entries")):
            flags = into.setdefault(comm, {"pages": {}, "entries": {}, "flags": []})["flags"]
            if notable not in flags:
                flags.append(notable)
    for comm, acc in per.items():
        slot = into.setdefault(comm, {"pages": {}, "entries": {}, "flags": []})
        for what in ("pages", "entries"):
            for kind, n in acc[what].items():
                slot[what][kind] = max(slot[what].get(kind, 0), n)


#: VMA flags worth listing for what a selftest mapped.
_NOTABLE_FLAGS = frozenset({"PFNMAP", "MIXEDMAP", "IO", "HUGETLB", "UFFD_WP", "UFFD_MISSING", "UFFD_MINOR",
                            "MERGEABLE", "LOCKED", "DROPPABLE", "SHARED", "HUGEPAGE"})

#: Where the guest runner keeps its state on the results share.
_STATE = "selftests"


def _plan_text(chosen: Sequence[Tuple[Selftest, str]], bindir: Path) -> str:
    """The runner's plan: ``name<TAB>timeout<TAB>command`` per test."""
    return "".join(f"{t.name}\t{t.timeout}\t{shlex.join([str(bindir / p), *t.args])}\n" for t, p in chosen)


def _running(state: Path) -> Tuple[str, ...]:
    try:
        name = (state / "current").read_text().strip()
    except OSError:
        return ()
    return (name,) if name else ()


def _findings(doc: Optional[Mapping[str, Any]]) -> Tuple[Tuple[str, str, str, int, str, str], ...]:
    if not doc:
        return ()
    return tuple((f["rule"], f["severity"], f.get("comm") or "", int(f.get("pid") or 0), str(f.get("start")),
                  f.get("message", "")) for f in doc.get("findings", []))


def _audit_once(guest: Any, via: str, state: Path, started: float, dump_dir: Path
                ) -> Tuple[Audit, Optional[Dict[str, Any]]]:
    """One ``drgn-p2p audit --json -v --fail-on warning`` through *via*: the :class:`Audit` and its document."""
    from drgn_p2p.lab.cli import audit_streams

    before = _running(state)
    t0 = time.monotonic()
    try:
        code, stdout, stderr = audit_streams(guest, via, ["--json", "-v", "--fail-on", "warning"], dump_dir,
                                             timeout=900)
    except (LabError, subprocess.TimeoutExpired) as e:
        code, stdout, stderr = 2, "", f"error: {e}"
    t1 = time.monotonic()
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        doc = None
    error = next((line for line in stderr.splitlines() if line.startswith("error:")), "") if code == 2 else ""
    audit = Audit(via, round(t0 - started, 1), round(t1 - t0, 1), code,
                  tuple(dict.fromkeys(before + _running(state))), _findings(doc), error,
                  int((doc or {}).get("summary", {}).get("withdrawn", 0)))
    return audit, doc


def run(guest: Any, bindir: Path, chosen: Sequence[Tuple[Selftest, str]], skipped: Mapping[str, str],
        tier: str, vias: Sequence[str] = ("qemu", "live"), pause: float = 5.0,
        on_audit: Any = None) -> Run:
    """
    Run the *chosen* selftests in *guest* one after another (``guest/selftests.sh``,
    detached) and audit it through each of *vias* at the same time, each via in
    a loop of its own (an audit, *pause* seconds, the next), until the last
    test has exited; then once more through each via. *on_audit*, if given, is
    called with each :class:`Audit`.
    """
    state = Path(guest.out_dir) / _STATE
    if state.exists():
        shutil.rmtree(state)
    state.mkdir()
    (state / "plan.tsv").write_text(_plan_text(chosen, bindir))
    script = GUEST_DIR / "selftests.sh"
    code, out = guest.run(f"setsid bash {shlex.quote(str(script))} /out/{_STATE} </dev/null >/dev/null 2>&1 &",
                          timeout=30)
    if code != 0:
        raise LabError(f"cannot start the selftests in the guest: {out.strip()}")
    started = time.monotonic()
    audits: List[Audit] = []
    mapped: Dict[str, Any] = {}
    lock = threading.Lock()
    comms = [_comm(p) for _, p in chosen]
    errors: List[BaseException] = []

    def loop(via: str, tmp: str) -> None:
        try:
            while True:
                last = (state / "done").exists()
                audit, doc = _audit_once(guest, via, state, started, Path(tmp))
                with lock:
                    audits.append(audit)
                    if doc:
                        mapped_by_test(doc, comms, mapped)
                    if on_audit is not None:
                        on_audit(audit)
                if last:
                    return
                if not guest.alive():
                    raise LabError("the guest died while the selftests ran")
                time.sleep(pause)
        except BaseException as e:  # handed to the caller's thread
            errors.append(e)

    with tempfile.TemporaryDirectory(prefix="drgn-p2p-selftests-") as tmp:
        threads = [threading.Thread(target=loop, args=(via, tmp), name=f"audit-{via}", daemon=True) for via in vias]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    audits.sort(key=lambda a: a.at)
    tests = []
    for t, program in chosen:
        rc_file = state / f"{t.name}.rc"
        log_file = state / f"{t.name}.log"
        if not rc_file.exists():
            raise LabError(f"selftest {t.name} left no exit status")
        status, seconds = rc_file.read_text().split()
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        tests.append(TestResult(t.name, shlex.join([program, *t.args]), int(status), float(seconds), parse_totals(log)))
    return Run(guest.kernel.kver, tier, tuple(tests), dict(skipped), tuple(audits), mapped,
               {"run": round(time.monotonic() - started, 1)})


def run_selftests(guest: Any, tier: Optional[str] = None, on_audit: Any = None,
                  vias: Sequence[str] = ("qemu", "live")) -> Run:
    """Build the kernel's selftests (cached), pick those *guest* can run and run them, auditing throughout."""
    timings: Dict[str, float] = {}
    t0 = time.monotonic()
    bindir, failed = build(guest.kernel, timings)
    built = time.monotonic() - t0
    programs = [p.name for p in bindir.iterdir()] if bindir.is_dir() else []
    code, _ = guest.run("test -c /dev/hmm_dmirror0", timeout=30)
    chosen, skipped = select(guest.kernel, programs, tier, test_hmm=code == 0)
    for t, program in list(chosen):
        if program in failed:
            raise LabError(f"selftest {program} did not build for {guest.kernel.kver}: {failed[program]}")
    result = run(guest, bindir, chosen, skipped, tier or _tier_of(guest.kernel), vias=vias, on_audit=on_audit)
    return Run(result.kver, result.tier, result.tests, result.skipped, result.audits, result.mapped,
               {"build": round(built, 1), **result.timings})


# ---------------------------------------------------------------- the document


def attribute(run_: Mapping[str, Any]) -> Dict[str, List[Tuple[str, str, int]]]:
    """
    The findings of a run's audits by selftest (a finding in a process whose
    comm is a selftest's program) or ``""`` for other processes:
    ``{test name: [(rule, severity, audits that drew it)]}``.
    """
    by_comm = {}
    for t in run_["tests"]:
        by_comm.setdefault(_comm(shlex.split(t["command"])[0]), []).append(t["name"])
    counts: Dict[str, Dict[Tuple[str, str], int]] = {}
    for audit in run_["audits"]:
        seen = set()
        for rule, severity, comm, _pid, _start, _msg in audit["findings"]:
            names = [n for n in by_comm.get(comm, []) if n in audit["running"]] or by_comm.get(comm, [""])[:1]
            for name in names:
                seen.add((name, rule, severity))
        for name, rule, severity in seen:
            slot = counts.setdefault(name, {})
            slot[(rule, severity)] = slot.get((rule, severity), 0) + 1
    return {name: sorted((r, s, n) for (r, s), n in rules.items()) for name, rules in counts.items()}


def kernel_record(run_: Run, kernel_name: str, boot_seconds: float) -> Dict[str, Any]:
    """The entry of one kernel in the selftests document."""
    doc = run_.to_json()
    doc["timings"] = {"boot": round(boot_seconds, 1), **doc["timings"]}
    doc["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc["name"] = kernel_name
    return doc


def merge(existing: Optional[Mapping[str, Any]], kernels: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """A document with *kernels* replacing those of *existing* (other kernels kept)."""
    from .proof import merge_kernels

    return {"schema": SCHEMA, "kernels": merge_kernels(existing, kernels, SCHEMA)}


def _kinds(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))


def _mapped_cell(mapped: Optional[Mapping[str, Any]]) -> str:
    if not mapped:
        return "nothing seen"
    parts = []
    if mapped.get("pages"):
        parts.append(_kinds(mapped["pages"]))
    if mapped.get("entries"):
        parts.append("entries: " + _kinds(mapped["entries"]))
    flags = [kept for kept in ([f for f in fs if f in _NOTABLE_FLAGS] for fs in mapped.get("flags", [])) if kept]
    if flags:
        parts.append("in " + "; ".join("|".join(f) for f in dict.fromkeys(tuple(f) for f in flags)))
    return " — ".join(parts) or "nothing seen"


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The selftests page (``docs/selftests.md``) from a selftests document."""
    from .proof import _md

    out = [
        "# The kernel's mm selftests as workloads",
        "",
        "<!-- Generated by scripts/selftests-report from the JSON of a lab run (tests/lab/test_selftests.py). "
        "Do not edit: regenerate. -->",
        "",
        "Each lab kernel's own `tools/testing/selftests/mm` programs (`vm` before 6.3), built from its "
        "`linux-source-X.Y` package against its own `linux-libc-dev` headers, run one after another in the lab "
        "guest (which holds every scenario at the same time) while `drgn-p2p audit --fail-on warning -v` audits "
        "the guest over and over, over QMP from the host and live through `/proc/kcore` in the guest, "
        "each in a loop of its own, at the same time (`drgn-p2p lab selftests --kernel K`; `drgn_p2p/lab/selftests.py`). "
        "A selftest's own exit status is the kernel's business (0 pass, 4 skip, 124 killed at its timeout); "
        "what matters here is that every audit exits 0 and that what the tests map is classified. "
        "The **mapped** column is what the audits saw in the test's processes: 4 KiB pages by kind (the most "
        "seen in one audit), non-present entries by kind, and the notable VMA flags of the VMAs holding them; "
        "a test shorter than an audit (QMP audits take 10–30 s under TCG, live ones a minute or more) is "
        "often not caught mapped, and its row says `nothing seen`.",
        "",
        "Tiers: `core` runs on every lab kernel, `full` adds the slower tests on the newest "
        "(cost per kernel in the timings line; `build` is 0 when the binaries were cached).",
        "",
        "Regenerate: `scripts/test -k test_selftests` (or `drgn-p2p lab selftests --kernel K --json FILE` "
        "per kernel), then `scripts/selftests-report [FILE]`.",
        "",
    ]
    out += ["## The catalogue", "", "| selftest | tier | needs | what it maps |", "|---|---|---|---|"]
    out += [f"| `{t.name}` | {t.tier} | {', '.join(t.needs + (('test_hmm',) if t.test_hmm else ())) or '—'} | "
            f"{_md(t.what)} |" for t in SELFTESTS]
    out.append("")
    for name, run_ in doc["kernels"].items():
        audits = run_["audits"]
        by_via: Dict[str, List[int]] = {}
        for a in audits:
            by_via.setdefault(a["via"], []).append(a["exit_code"])
        found = attribute(run_)
        timings = run_.get("timings", {})
        out += [
            f"## {name}: {run_['kver']} (tier {run_['tier']}, {run_.get('when', '?')})",
            "",
            "Audits: " + ", ".join(
                f"{len(codes)} via {via} (exit codes {', '.join(f'{c}×{codes.count(c)}' for c in sorted(set(codes)))})"
                for via, codes in by_via.items()) + ". "
            + "Lab time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()) + ".",
            "",
            "| selftest | command | status | seconds | kselftest totals | audits during it | mapped (classified as) "
            "| findings |",
            "|---|---|---|---|---|---|---|---|",
        ]
        sharing: Dict[str, List[str]] = {}
        for t in run_["tests"]:
            sharing.setdefault(_comm(shlex.split(t["command"])[0]), []).append(t["name"])
        for t in run_["tests"]:
            comm = _comm(shlex.split(t["command"])[0])
            shared = f" (all runs of `{comm}`)" if len(sharing[comm]) > 1 and run_["mapped"].get(comm) else ""
            drawn = found.get(t["name"], [])
            cell = ", ".join(f"{sev} `{rule}` ({n} audits)" for rule, sev, n in drawn) or "none"
            during = sum(1 for a in audits if t["name"] in a["running"])
            verdict = {0: "pass", 4: "skip", 124: "timeout", 137: "timeout"}.get(t["status"], "fail")
            out.append(f"| `{t['name']}` | `{_md(t['command'])}` | {t['status']} ({verdict}) | {t['seconds']:.0f} | "
                       f"{_md(t['totals']) or '—'} | {during} | {_md(_mapped_cell(run_['mapped'].get(comm)))}{shared} | {cell} |")
        others = found.get("", [])
        out += ["", "Findings in other processes (the lab's own scenarios) during the run: "
                + (", ".join(f"{sev} `{rule}` ({n} audits)" for rule, sev, n in others) or "none") + "."]
        errors = sorted({a["error"] for a in audits if a.get("error")})
        if errors:
            out += ["", "Audit errors: " + "; ".join(f"`{_md(e)}`" for e in errors)]
        if run_["skipped"]:
            out += ["", "Not run: " + "; ".join(f"`{n}` ({_md(why)})" for n, why in run_["skipped"].items()) + "."]
        out.append("")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m drgn_p2p.lab.selftests FILE``: print the Markdown page of a selftests document."""
    from .proof import render_main

    return render_main(argv, "python -m drgn_p2p.lab.selftests SELFTESTS.json", SCHEMA, render_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
