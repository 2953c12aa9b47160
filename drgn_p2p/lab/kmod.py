# SPDX-License-Identifier: GPL-2.0-or-later
"""
Lab kernel modules
------------------

Out-of-tree modules built for each lab kernel at test time, against that
kernel's own Debian headers (or its build tree) and with the gcc that built it:

``p2p_violate``
    Our own module (sources in ``drgn_p2p/lab/kmod/``): ``/dev/p2p_violate``
    builds, per mmap offset, a wrong mapping that a rule must report next to
    correct controls (see :data:`VIOLATE_CASES`). ``violate_holder`` (built
    by :func:`build_holder`) maps every case in a guest and holds them; given
    test_hmm's device as well, it also holds legitimate device-exclusive
    entries (:data:`HMM_EXCLUSIVE_CASE`).
``test_hmm``
    The kernel's ``lib/test_hmm.c`` (DEVICE_PRIVATE pages), taken at build
    time from the kernel's own ``linux-source-<major.minor>`` package. Only for
    kernels with ``CONFIG_DEVICE_PRIVATE=y``.

Newer Debian kernels need a newer gcc than the host's (7.x passes
``-fmin-function-alignment``, unknown to bookworm's gcc-12), and the header
packages' tools run on their suite's glibc, so every build runs in a
debootstrapped minbase chroot of the kernel's suite, cached in
``cache_dir()/chroots/<suite>/``. The headers (``linux-headers-<KVER>``, its
``-common`` and ``linux-kbuild-*``) are unpacked into it with
``dpkg --force-depends --unpack``.

A kernel given as a build tree (``lab run --kernel-dir``) gets its modules
built against the tree itself (``make -C BUILD M=...``: its .config,
Module.symvers, scripts/ and generated headers), mounted into the chroot of
the oldest suite offering the gcc its CONFIG_CC_VERSION_TEXT names, so that
the tree's host programs (fixdep, modpost) find the glibc they were built
with; test_hmm then comes from the tree's own ``lib/`` when it has one. A
kernel given as files whose release names a Debian headers package
(``linux-headers-KVER``) is built for as a lab kernel is. See
:func:`module_target`.

A kernel of another architecture (arm64) is built for by cross-compiling in
the same chroot: Debian's cross gcc of the kernel's version
(``gcc-N-aarch64-linux-gnu``), the kernel's own ``linux-headers-<KVER>`` of
its architecture (configuration, generated headers, Module.symvers), and the
*host's* ``linux-kbuild`` of the same version, whose fixdep and modpost run
in the chroot; ``make ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-``. Built modules are cached in
``cache_dir()/kmods/<KVER>/<name>-<hash>/`` where the hash covers the sources,
the build recipe and the compiler.

Needs root (debootstrap, chroot, mount) plus debootstrap and kmod (modinfo).
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from rich.console import Console

from drgn_p2p.lab import LabError, apt, cache_dir

__all__ = (
    "MODULES",
    "SOURCE_DIR",
    "ModuleUnsupported",
    "Compiler",
    "compiler",
    "ViolateCase",
    "VIOLATE_CASES",
    "HMM_EXCLUSIVE_CASE",
    "HeldCase",
    "chroots_dir",
    "kmods_dir",
    "ensure_chroot",
    "Headers",
    "Target",
    "module_target",
    "suite_offering",
    "build_module",
    "build_holder",
    "module_supported",
    "vermagic",
    "kernel_vermagic",
    "parse_case_table",
    "parse_manifest",
)

#: The modules :func:`build_module` knows.
MODULES = ("p2p_violate", "test_hmm")

#: Where the sources we ship live (installed as package data).
SOURCE_DIR = Path(__file__).with_name("kmod")

#: Packages every build chroot gets besides the kernel's gcc.
CHROOT_PACKAGES = ("make", "libc6-dev", "libelf-dev")

#: Bumped when the build recipe changes in a way the source hash cannot see.
RECIPE = 1

_VIOLATE_FILES = ("p2p_violate.c", "p2p_violate.h", "Kbuild")
_TEST_HMM_FILES = ("test_hmm.c", "test_hmm_uapi.h")
_TEST_HMM_KBUILD = "obj-m += test_hmm.o\n"
_MARKER = ".drgn-p2p-complete"
_CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C", "LANG": "C"}
_console = Console(stderr=True)


class ModuleUnsupported(LabError):
    """The kernel cannot have this module at all (a reason to skip, not a failure)."""


# ---------------------------------------------------------------- the p2p_violate cases


class ViolateCase(NamedTuple):
    """One case of ``/dev/p2p_violate``: mmap offset ``pgoff * PAGE_SIZE``."""

    name: str
    pgoff: int
    length: int
    huge: bool
    #: The rule ids the auditor must report on the case's mapping, exactly
    #: (every one of them, no other); empty for a control, on which no rule
    #: may report at warning or error level.
    trips: Tuple[str, ...]
    #: Whether the holder touches every page (False for cases built as
    #: non-present entries, which a fault would wait on or reject).
    touch: bool = True
    #: Kernel options (``=y``) the case needs; without them mmap() fails with
    #: EOPNOTSUPP. Python-side knowledge, for reasons and expectations.
    needs: Tuple[str, ...] = ()
    #: What the mapping is, in words.
    what: str = ""

    @property
    def control(self) -> bool:
        return not self.trips

    def unsupported(self, config: Mapping[str, str]) -> Optional[str]:
        """Why a kernel with *config* cannot express this case, or None if it can."""
        missing = [opt for opt in self.needs if config.get(opt) != "y"]
        return f"kernel lacks {', '.join(missing)}" if missing else None


_PMD_PFNMAP = ("CONFIG_TRANSPARENT_HUGEPAGE", "CONFIG_ARCH_SUPPORTS_PMD_PFNMAP")
_DEVMAP = ("CONFIG_ARCH_HAS_PTE_DEVMAP",)

#: The cases, as in ``kmod/p2p_violate.h`` (a unit test keeps the two equal).
#: ZONE_DEVICE pages of the later cases are the module's own (memremap_pages()
#: on 2 MiB chunks of the memmap-less BAR), mapped without a reference.
VIOLATE_CASES = (
    ViolateCase("control-remap", 0, 0x4000, False, (), what="BAR PFNs by remap_pfn_range(): special PTEs, VM_PFNMAP|VM_IO"),
    ViolateCase("control-fault-pfn", 1, 0x4000, False, (), what="RAM pages by vmf_insert_pfn() at fault time: special PTEs, VM_PFNMAP"),
    ViolateCase("control-huge-pfn", 2, 0x200000, True, (), needs=_PMD_PFNMAP,
                what="a BAR PMD leaf by vmf_insert_pfn_pmd(): special PMD, VM_PFNMAP|VM_IO"),
    ViolateCase("nomemmap-no-pfnmap", 3, 0x4000, False, ("no-memmap-outside-pfnmap",),
                what="BAR PFNs (no struct page) in a VMA without VM_PFNMAP/VM_MIXEDMAP"),
    ViolateCase("pfnmap-not-special", 4, 0x4000, False, ("no-memmap-not-special",),
                what="BAR PFNs (no struct page) in a VM_PFNMAP VMA, special bit cleared"),
    ViolateCase("huge-pfn-not-special", 5, 0x200000, True, ("huge-pfn-not-special",), needs=("CONFIG_TRANSPARENT_HUGEPAGE",),
                what="a BAR PMD leaf without the special bit (before 6.12 no PMD can be special)"),
    ViolateCase("special-on-ram", 6, 0x4000, False, ("special-outside-pfnmap",),
                what="special PTEs on RAM pages in a VMA without VM_PFNMAP/VM_MIXEDMAP"),
    ViolateCase("mixedmap-pages", 7, 0x4000, False, ("mixedmap-all-struct-pages",), needs=("CONFIG_ZONE_DEVICE",),
                what="P2PDMA pages under plain PTEs in a VM_MIXEDMAP VMA of struct pages only (info)"),
    ViolateCase("devmap-on-ram", 8, 0x4000, False, ("devmap-not-dax",), needs=_DEVMAP,
                what="pte_mkdevmap() bits (devmap+special) on RAM pages in a VM_MIXEDMAP VMA"),
    ViolateCase("pfnmap-ram-not-special", 9, 0x4000, False, ("pfnmap-not-special",),
                what="RAM pages in a shared VM_PFNMAP VMA, special bit cleared"),
    ViolateCase("devmap-not-special", 10, 0x4000, False, ("devmap-not-dax", "devmap-pte-not-special"), needs=_DEVMAP,
                what="devmap bit without the special bit on RAM pages, VM_MIXEDMAP cleared"),
    ViolateCase("p2pdma-special", 11, 0x4000, False, ("p2pdma-leaf", "mixedmap-all-struct-pages"),
                needs=("CONFIG_ZONE_DEVICE",),
                what="P2PDMA pages under special PTEs in a VM_MIXEDMAP VMA (p2pmem's VMA shape)"),
    ViolateCase("p2pdma-no-mixedmap", 12, 0x4000, False, ("p2pdma-vma-flags",), needs=("CONFIG_ZONE_DEVICE",),
                what="P2PDMA pages under plain PTEs in a VM_SHARED VMA without VM_MIXEDMAP"),
    ViolateCase("devdax-special", 13, 0x4000, False, ("dax-leaf-bits",), needs=("CONFIG_ZONE_DEVICE",),
                what="device-dax pages under special-only PTEs in a VMA without VM_PFNMAP/VM_MIXEDMAP"),
    ViolateCase("devdax-in-pfnmap", 14, 0x4000, False, ("dax-in-pfnmap",), needs=("CONFIG_ZONE_DEVICE",),
                what="device-dax pages with this kernel's DAX PTE bits, in a VM_PFNMAP|VM_IO VMA"),
    ViolateCase("coherent-in-pfnmap", 15, 0x4000, False, ("device-coherent-mapping",), needs=("CONFIG_ZONE_DEVICE",),
                what="DEVICE_COHERENT pages under special PTEs in a VM_PFNMAP|VM_IO VMA"),
    ViolateCase("private-present", 16, 0x4000, False, ("device-private-present",),
                needs=("CONFIG_ZONE_DEVICE", "CONFIG_DEVICE_PRIVATE"),
                what="DEVICE_PRIVATE pages (backed by the BAR) under present special PTEs"),
    ViolateCase("migration-to-p2pdma", 17, 0x4000, False, ("migration-target",), touch=False,
                needs=("CONFIG_ZONE_DEVICE", "CONFIG_MIGRATION"),
                what="migration entries whose PFNs are (locked) P2PDMA pages"),
    ViolateCase("unknown-marker", 18, 0x4000, False, ("garbage-entry",), touch=False,
                what="PTE markers with a bit no kernel defines (bit 6)"),
    ViolateCase("private-entry-to-ram", 19, 0x4000, False, ("device-private-entry-target",), touch=False,
                needs=("CONFIG_DEVICE_PRIVATE",),
                what="writable device-private entries whose PFNs are (pinned) RAM pages, in a VM_PFNMAP|VM_IO VMA"),
    ViolateCase("exclusive-to-p2pdma", 20, 0x4000, False, ("device-exclusive-target",), touch=False,
                needs=("CONFIG_ZONE_DEVICE", "CONFIG_DEVICE_PRIVATE"),
                what="device-exclusive entries whose PFNs are P2PDMA pages, in a VM_PFNMAP|VM_IO VMA"),
)

#: The case name of the legitimate device-exclusive entries the holder makes
#: through test_hmm when given its device (four pages of private anonymous
#: memory; a control for ``device-exclusive-target``).
HMM_EXCLUSIVE_CASE = "hmm-exclusive"

_CASE_RE = re.compile(r'X\((\w+),\s*(\d+),\s*"([^"]+)",\s*(P2PV_\w+_LEN),\s*([01]),\s*([01])\)')
_LEN_RE = re.compile(r"#define\s+(P2PV_\w+_LEN)\s+\((\d+)UL\s*\*\s*(\d+)(?:\s*\*\s*(\d+))?\)")


def parse_case_table(header: str) -> List[ViolateCase]:
    """
    Read the case table (name, pgoff, length, huge, touch) from the text of
    ``p2p_violate.h``; trips, needs and what come from :data:`VIOLATE_CASES`.
    """
    lengths = {}
    for m in _LEN_RE.finditer(header):
        value = 1
        for factor in m.groups()[1:]:
            if factor:
                value *= int(factor)
        lengths[m.group(1)] = value
    known = {c.name: c for c in VIOLATE_CASES}
    cases = []
    for m in _CASE_RE.finditer(header):
        py = known.get(m.group(3))
        cases.append(
            ViolateCase(
                m.group(3), int(m.group(2)), lengths[m.group(4)], m.group(5) == "1",
                py.trips if py else (), m.group(6) == "1",
                py.needs if py else (), py.what if py else "",
            )
        )
    return cases


class HeldCase(NamedTuple):
    """One line of the holder's manifest: a held mapping, or a case the kernel could not build."""

    case: str
    pid: int
    addr: Optional[int]
    length: Optional[int]
    #: Why the case was not mapped (None when it is held).
    skip: Optional[str] = None


def parse_manifest(text: str) -> List[HeldCase]:
    """
    Parse the manifest ``violate_holder`` writes: ``case pid addr len`` per
    held case (addr in hex), ``case pid skip reason...`` per case it could not map.
    """
    held = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) >= 3 and words[2] == "skip":
            held.append(HeldCase(words[0], int(words[1]), None, None, " ".join(words[3:]) or "skipped"))
        elif len(words) == 4:
            held.append(HeldCase(words[0], int(words[1]), int(words[2], 16), int(words[3])))
        else:
            raise LabError(f"bad manifest line {line!r}")
    return held


# ---------------------------------------------------------------- compilers


#: Debian architecture -> (GNU triplet of its cross compilers, the kernel's ARCH=).
CROSS_TARGETS = {"arm64": ("aarch64-linux-gnu", "arm64")}


class Compiler(NamedTuple):
    """The gcc that builds modules for one kernel, as the build chroot installs it."""

    #: Debian package: ``gcc-16``, or a cross compiler ``gcc-16-aarch64-linux-gnu``.
    package: str
    #: Its program in /usr/bin: ``gcc-16``, ``aarch64-linux-gnu-gcc-16``.
    binary: str
    #: What ``make`` needs besides ``CC=``: ``ARCH=`` and ``CROSS_COMPILE=`` for another architecture.
    make_args: Tuple[str, ...] = ()


def compiler(cc: str, arch: str = apt.HOST_ARCH) -> Compiler:
    """The :class:`Compiler` for a kernel of Debian *arch* built by *cc* (``gcc-16``)."""
    if arch == apt.HOST_ARCH:
        return Compiler(cc, cc)
    if arch not in CROSS_TARGETS:
        raise ModuleUnsupported(f"the lab cannot build modules for {arch} kernels")
    triplet, karch = CROSS_TARGETS[arch]
    return Compiler(f"{cc}-{triplet}", f"{triplet}-{cc}", (f"ARCH={karch}", f"CROSS_COMPILE={triplet}-"))


def _compiler_binary(package: str) -> str:
    """The /usr/bin program of a compiler package named by :func:`compiler`."""
    for triplet, _ in CROSS_TARGETS.values():
        if package.endswith(f"-{triplet}"):
            return f"{triplet}-{package[:-len(triplet) - 1]}"
    return package


# ---------------------------------------------------------------- paths and small helpers


def chroots_dir() -> Path:
    """Return the directory holding one build chroot per Debian suite."""
    return cache_dir() / "chroots"


def kmods_dir() -> Path:
    """Return the directory holding built modules, one subdirectory per KVER."""
    return cache_dir() / "kmods"


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (serialises chroot use between processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _step(what: str, timings: Optional[Dict[str, float]] = None) -> Iterator[None]:
    """Show a spinner for a long step, then its duration."""
    start = time.monotonic()
    with _console.status(what):
        yield
    took = time.monotonic() - start
    if timings is not None:
        timings[what] = took
    _console.print(f"  {what}: {took:.1f} s")


def _run(argv: Sequence[str], log: Optional[Path] = None, **kwargs: object) -> str:
    """Run a command; return its output, or raise LabError with its last lines (kept in ``log``)."""
    proc = subprocess.run(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs  # type: ignore[call-overload]
    )
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(argv)}\n{proc.stdout}\n")
    if proc.returncode != 0:
        lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        where = f" (log: {log})" if log is not None else ""
        raise LabError(f"{' '.join(argv[:3])} failed: {(errors or ['(no output)'])[-1].strip()}{where}")
    return proc.stdout


def _mounts_under(path: Path) -> List[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = os.path.realpath(path)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """
    Remove a chroot or build tree: unmount everything below it first, then
    ``rm --one-file-system`` so a forgotten mount can never take host files along.
    """
    if not path.exists() and not path.is_symlink():
        return
    for point in _mounts_under(path):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    if _mounts_under(path):
        raise LabError(f"cannot unmount everything below {path}; not removing it")
    _run(["rm", "-rf", "--one-file-system", str(path)])


@contextmanager
def _proc_mounted(root: Path) -> Iterator[None]:
    """Mount /proc in the chroot (objtool reads it) and always unmount it again."""
    target = root / "proc"
    target.mkdir(exist_ok=True)
    mounted = False
    try:
        if not os.path.ismount(target):
            _run(["mount", "-t", "proc", "proc", str(target)])
            mounted = True
        yield
    finally:
        if mounted and subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


@contextmanager
def _bind_mounted(root: Path, path: Path) -> Iterator[str]:
    """Bind-mount host directory *path* into chroot *root* at the same path;
    yield that path, and always unmount it again (and remove the mount
    point's directories this made, while empty)."""
    path = Path(path).resolve()
    target = root / str(path).lstrip("/")
    made = [d for d in (target, *target.parents) if d.is_relative_to(root) and d != root and not d.exists()]
    target.mkdir(parents=True, exist_ok=True)
    try:
        _run(["mount", "--bind", str(path), str(target)])
        try:
            yield str(path)
        finally:
            if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(target)], capture_output=True)
    finally:
        for d in made:  # deepest first
            if os.path.ismount(d):
                break
            try:
                d.rmdir()
            except OSError:
                break


@contextmanager
def _headers_in(root: Path, target: "Target", log: Path, timings: Dict[str, float]) -> Iterator[str]:
    """Yield the kernel's build directory inside the chroot: the Debian
    headers unpacked there, or the build tree (and the source tree its
    ``source`` link names) mounted there."""
    tree = target.headers.tree
    if tree is None:
        yield _ensure_headers(root, target.kver, str(target.headers.package_version), log, timings, target.arch)
        return
    with ExitStack() as stack:
        inside = stack.enter_context(_bind_mounted(root, tree))
        if (tree / "source").is_symlink():
            stack.enter_context(_bind_mounted(root, (tree / "source").resolve()))
        yield inside


def _chroot(root: Path, argv: Sequence[str], log: Optional[Path] = None) -> str:
    """Run ``argv`` inside the chroot with a clean environment."""
    return _run(["chroot", str(root), *argv], log=log, env=_CHROOT_ENV)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("building lab modules needs root (debootstrap, chroot, mount)")
    for tool in ("debootstrap", "chroot", "dpkg-deb", "modinfo"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} not found: install debootstrap and kmod")


def _kernel_record(kernel: object) -> Dict[str, object]:
    """The fetch record of a lab kernel (``kernel.json``: suite, version, packages, ...)."""
    path = Path(getattr(kernel, "dir")) / "kernel.json"
    if not path.is_file():
        raise LabError(f"{getattr(kernel, 'kver', kernel)} is not a fetched Debian lab kernel (no {path})")
    return json.loads(path.read_text())


def _kernel_arch(kernel: object) -> str:
    """The Debian architecture of a lab kernel (``amd64`` unless it says otherwise)."""
    return str(getattr(kernel, "arch", None) or _kernel_record(kernel).get("arch") or apt.HOST_ARCH)


def _kernel_facts(kernel: object) -> Tuple[str, str, str, str]:
    """Return (kver, suite, cc, package version) of a lab kernel, or raise LabError."""
    kver = str(getattr(kernel, "kver"))
    record = _kernel_record(kernel)
    suite = getattr(kernel, "suite", None) or record.get("suite")
    cc = getattr(kernel, "cc", None) or record.get("cc")
    version = record.get("version")
    if not suite or not version:
        raise LabError(f"{kver}: no Debian suite/version recorded; modules are built only for fetched lab kernels")
    if not cc:
        raise LabError(f"{kver}: CONFIG_CC_VERSION_TEXT names no gcc; cannot pick a compiler")
    return kver, str(suite), str(cc), str(version)


class Headers(NamedTuple):
    """Where a module build finds the kernel's build directory: exactly one of the two."""

    #: Debian version of ``linux-headers-KVER`` (with its -common and
    #: linux-kbuild), unpacked into the chroot.
    package_version: Optional[str] = None
    #: A kernel build tree on the host as ``make`` leaves it (.config,
    #: Module.symvers, scripts/, generated headers), mounted into the chroot
    #: at its own path so the absolute paths ``make`` recorded hold there.
    tree: Optional[Path] = None

    def key(self) -> Tuple[str, ...]:
        """What identifies these headers in a module's cache key."""
        if self.tree is None:
            return (str(self.package_version),)
        h = hashlib.sha256()
        for name in (".config", "Module.symvers"):
            h.update((self.tree / name).read_bytes() + b"\0")
        return (f"tree:{h.hexdigest()[:16]}",)


class Target(NamedTuple):
    """What a module build needs to know of a kernel (see :func:`module_target`)."""

    kver: str
    #: Debian suite whose chroot builds: it offers :attr:`cc`.
    suite: str
    #: The kernel's gcc package (``gcc-16``).
    cc: str
    #: Debian architecture of the kernel.
    arch: str
    headers: Headers
    #: A source tree whose ``lib/test_hmm.c`` is the kernel's own, or None
    #: to take it from the ``linux-source-X.Y`` package.
    hmm_tree: Optional[Path] = None
    #: The linux-source version to take test_hmm from (None: the newest
    #: :attr:`source_suite` offers).
    source_version: Optional[str] = None
    #: The suite offering ``linux-source-X.Y`` (None: :attr:`suite`).
    source_suite: Optional[str] = None


def suite_offering(package: str) -> Optional[str]:
    """The oldest suite of :data:`apt.SUITES` offering *package*, or None."""
    offered = {c.suite for c in apt.madison(package) if c.package == package}
    return next((suite for suite in apt.SUITES if suite in offered), None)


def _tree_sources(build: Path) -> Optional[Path]:
    """The source tree of build tree *build* when it holds test_hmm's sources
    (built in place, or ``make O=``: its ``source`` link), else None."""
    source = build / "source" if (build / "source").is_symlink() else build
    if all((source / "lib" / name).is_file() for name in _TEST_HMM_FILES):
        return source.resolve()
    return None


def module_target(kernel: object) -> Target:
    """
    Tell how to build modules for *kernel* (a :class:`drgn_p2p.lab.kernels.Kernel`):

    * a kernel given as a build tree (its ``build``): against the tree, with
      the gcc its CONFIG_CC_VERSION_TEXT names in the chroot of the oldest
      suite offering that gcc; test_hmm from the tree's own sources, else
      from the ``linux-source`` package of its major.minor;
    * a fetched lab kernel: its recorded suite, gcc and Debian version;
    * any other kernel whose release names a Debian headers package the
      archive offers (``linux-headers-KVER``, e.g. a kernel installed from
      Debian's packages): that package, in the suite offering it.

    Raises LabError when none applies or the gcc is unknown.
    """
    kver = str(getattr(kernel, "kver"))
    arch = str(getattr(kernel, "arch", None) or apt.HOST_ARCH)
    cc = getattr(kernel, "cc", None)
    build = getattr(kernel, "build", None)
    if build is not None:
        build = Path(build)
        if not cc:
            raise LabError(f"{kver}: CONFIG_CC_VERSION_TEXT of {build}/.config names no gcc; cannot pick a compiler")
        missing = [name for name in ("Module.symvers", "scripts/mod/modpost") if not (build / name).is_file()]
        if missing:
            raise LabError(f"{build} lacks {', '.join(missing)}: run make (modules need a fully built tree)")
        suite = suite_offering(compiler(str(cc), arch).package)
        if suite is None:
            raise LabError(f"{kver} was built by {cc}, which no Debian suite ({', '.join(apt.SUITES)}) offers")
        hmm_tree = _tree_sources(build)
        source_suite = None
        if hmm_tree is None:
            source_suite = suite_offering(_source_package(kver))
            if source_suite is None:
                raise LabError(f"{build} holds no lib/test_hmm.c and no suite offers {_source_package(kver)}")
        return Target(kver, suite, str(cc), arch, Headers(tree=build), hmm_tree, None, source_suite)
    if (Path(getattr(kernel, "dir")) / "kernel.json").is_file():
        kver, suite, cc, version = _kernel_facts(kernel)
        return Target(kver, suite, cc, _kernel_arch(kernel), Headers(package_version=version),
                      source_version=version)
    package = f"linux-headers-{kver}"
    offered = [c for c in apt.madison(package, arch=arch) if c.package == package]
    if not offered:
        raise LabError(f"{kver} is neither a build tree (--kernel-dir) nor a Debian kernel whose {package} "
                       "the archive offers: give its build tree, or a test_hmm.ko in $DRGN_P2P_TEST_HMM")
    if not cc:
        raise LabError(f"{kver}: CONFIG_CC_VERSION_TEXT names no gcc; cannot pick a compiler")
    return Target(kver, offered[0].suite, str(cc), arch, Headers(package_version=offered[0].version),
                  source_version=offered[0].version)


# ---------------------------------------------------------------- chroots


def _chroot_record(root: Path) -> Optional[Dict[str, object]]:
    marker = root / _MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except ValueError:
        return None


def _ensure_chroot_locked(suite: str, cc: str, timings: Optional[Dict[str, float]] = None) -> Path:
    """The chroot of *suite* with compiler package *cc* (see :func:`compiler`), built unless cached.
    The chroot keeps every compiler it was ever asked for."""
    root = chroots_dir() / suite
    record = _chroot_record(root)
    compilers: List[str] = []
    if record is not None:
        compilers = [str(c) for c in record.get("compilers", [])]  # type: ignore[union-attr]
        if cc in compilers and (root / "usr" / "bin" / _compiler_binary(cc)).exists():
            return root
        _console.print(f"[yellow]chroot {suite} lacks {cc}: building it again[/]")
    compilers = sorted(set(compilers) | {cc})
    staging = chroots_dir() / f".{suite}.new"
    _remove_tree(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    include = ",".join([*compilers, *CHROOT_PACKAGES])
    log = chroots_dir() / f"{suite}.log"
    log.write_text("")
    try:
        with _step(f"debootstrap {suite} ({include})", timings):
            _run(
                ["debootstrap", "--variant=minbase", f"--include={include}", suite, str(staging), apt.mirror()],
                log=log,
            )
        for package in compilers:
            if not (staging / "usr" / "bin" / _compiler_binary(package)).exists():
                raise LabError(f"debootstrap {suite} installed no /usr/bin/{_compiler_binary(package)}")
        (staging / _MARKER).write_text(
            json.dumps({"suite": suite, "compilers": compilers, "packages": list(CHROOT_PACKAGES),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n"
        )
        _remove_tree(root)
        staging.rename(root)
    finally:
        _remove_tree(staging)
    return root


def ensure_chroot(suite: str, cc: str) -> Path:
    """
    Return a minbase chroot of Debian ``suite`` with the compiler package ``cc``
    (e.g. ``gcc-16``, ``gcc-16-aarch64-linux-gnu``), make, libc6-dev and
    libelf-dev, debootstrapping it first unless cached.
    """
    _need_root()
    with _lock(chroots_dir() / f"{suite}.lock"):
        return _ensure_chroot_locked(suite, cc)


# ---------------------------------------------------------------- headers and sources


def _download_headers(kver: str, version: str, arch: str, dest: Path) -> List[Path]:
    """
    Download ``linux-headers-KVER`` of Debian *arch* and the -common and
    linux-kbuild packages it depends on, pinned, into *dest*. The kbuild
    package holds programs (fixdep, modpost) that run on the build machine:
    it is always the host's.
    """
    deps = apt.depends(f"linux-headers-{kver}={version}", arch=arch)
    kbuild = [d for d in deps if d.startswith("linux-kbuild-")]
    if not kbuild:
        raise LabError(f"linux-headers-{kver} depends on no linux-kbuild package")
    ours = [f"linux-headers-{kver}"] + [d for d in deps if d.startswith("linux-headers-")]
    debs = apt.download([f"{p}={version}" for p in ours], dest, arch=arch)
    return debs + apt.download([f"{p}={version}" for p in kbuild], dest)


def _in_chroot_file(root: Path, path: str) -> bool:
    """Whether ``path`` is a file inside the chroot (its symlinks are absolute, so resolve them there)."""
    return subprocess.run(["chroot", str(root), "test", "-f", path], env=_CHROOT_ENV).returncode == 0


def _ensure_headers(root: Path, kver: str, version: str, log: Path, timings: Dict[str, float],
                    arch: str = apt.HOST_ARCH) -> str:
    """Unpack the headers of a kernel of Debian *arch* into the chroot unless there; return the build dir inside it."""
    build = f"/lib/modules/{kver}/build"
    stamp = root / f".drgn-p2p-headers-{kver}"
    if stamp.exists() and _in_chroot_file(root, f"{build}/Makefile"):
        return build
    with tempfile.TemporaryDirectory(dir=root / "tmp") as tmp:
        with _step(f"download headers for {kver}", timings):
            debs = _download_headers(kver, version, arch, Path(tmp))
        with _step("unpack headers in the chroot", timings):
            # --unpack, not -i: the 7.x postinst calls linux-run-hooks from
            # linux-base, which the chroot lacks; nothing in it matters here.
            # Another architecture's headers hold no program that runs here.
            inside = [f"/tmp/{Path(tmp).name}/{d.name}" for d in debs]
            _chroot(root, ["dpkg", "--force-depends", "--force-architecture", "--force-unsafe-io", "--unpack",
                           *inside], log=log)
    if not _in_chroot_file(root, f"{build}/Makefile"):
        raise LabError(f"the headers of {kver} did not provide {build}/Makefile")
    stamp.touch()
    return build


def _source_package(kver: str) -> str:
    m = re.match(r"(\d+\.\d+)", kver)
    if not m:
        raise LabError(f"cannot tell the source package of {kver}")
    return f"linux-source-{m.group(1)}"


def _extract_test_hmm(kver: str, suite: str, version: Optional[str], dest: Path, timings: Dict[str, float]) -> str:
    """
    Extract lib/test_hmm.c and lib/test_hmm_uapi.h of the kernel's own
    linux-source package (*version*, else the one *suite* offers) into
    ``dest``; return the source package version used.
    """
    package = _source_package(kver)
    use = apt.version_in(package, suite)
    if use is None:
        raise LabError(f"{suite} offers no {package}")
    if version is not None and use != version:
        # The suite moved on; a later upload of the same major.minor is the next best source.
        _console.print(f"[yellow]{package} {version} is gone from {suite}; using {use}[/]")
    tarball = f"./usr/src/{package}.tar.xz"
    members = [f"{package}/lib/{name}" for name in _TEST_HMM_FILES]
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        with _step(f"download {package}", timings):
            (deb,) = apt.download([f"{package}={use}"], Path(tmp))
        with _step("extract test_hmm sources", timings):
            script = (
                'dpkg-deb --fsys-tarfile "$1" | tar -xO --occurrence=1 "$2" '
                '| tar -xJ -C "$3" --occurrence=1 "$4" "$5"'
            )
            _run(["sh", "-c", script, "sh", str(deb), tarball, tmp, *members])
        for name, member in zip(_TEST_HMM_FILES, members):
            found = Path(tmp) / member
            if not found.is_file():
                raise LabError(f"{deb.name} holds no {member}")
            shutil.move(str(found), str(dest / name))
    return use


def _violate_sources() -> Dict[str, bytes]:
    return {name: (SOURCE_DIR / name).read_bytes() for name in _VIOLATE_FILES}


def _digest(parts: Mapping[str, bytes], *extra: str) -> str:
    h = hashlib.sha256()
    for key in sorted(parts):
        h.update(key.encode() + b"\0" + parts[key] + b"\0")
    for item in (str(RECIPE), *extra):
        h.update(item.encode() + b"\0")
    return h.hexdigest()[:12]


# ---------------------------------------------------------------- building


def module_supported(kernel: object, name: str) -> Optional[str]:
    """Return why ``kernel`` cannot have module ``name``, or None if it can."""
    if name not in MODULES:
        raise LabError(f"unknown module {name!r}: choose one of {', '.join(MODULES)}")
    config = getattr(kernel, "config", {}) or {}
    if config.get("CONFIG_MODULES") not in (None, "y"):
        return f"{getattr(kernel, 'kver', '?')} has no loadable module support"
    if name == "test_hmm" and config.get("CONFIG_DEVICE_PRIVATE") != "y":
        return f"{getattr(kernel, 'kver', '?')} lacks CONFIG_DEVICE_PRIVATE=y: test_hmm cannot work there"
    arch = getattr(kernel, "arch", None) or apt.HOST_ARCH
    if arch != apt.HOST_ARCH and arch not in CROSS_TARGETS:
        return f"the lab cannot build modules for {arch} kernels"
    return None


def vermagic(ko: Path) -> str:
    """Return a module's vermagic string (``modinfo -F vermagic``)."""
    return _run(["modinfo", "-F", "vermagic", str(ko)]).strip()


def kernel_vermagic(kernel: object) -> str:
    """Return the vermagic of the kernel's own modules (read from one of its shipped .ko files)."""
    kver = str(getattr(kernel, "kver"))
    moddir = getattr(kernel, "modules_dir", None) or Path(getattr(kernel, "dir")) / "lib" / "modules" / kver
    tree = Path(moddir) / "kernel"
    for pattern in ("lib/*.ko*", "fs/*/*.ko*", "**/*.ko*"):
        for ko in sorted(tree.glob(pattern)):
            return vermagic(ko)
    raise LabError(f"{kver}: no module in {tree} to read the vermagic from")


def _cached_module(kver: str, name: str, key: str) -> Path:
    return kmods_dir() / kver / f"{name}-{key}" / f"{name}.ko"


def build_module(kernel: object, name: str, timings: Optional[Dict[str, float]] = None) -> Path:
    """
    Build module ``name`` (``"p2p_violate"`` or ``"test_hmm"``) for *kernel*
    (a :class:`drgn_p2p.lab.kernels.Kernel`: a fetched lab kernel, a build
    tree, or a Debian kernel; see :func:`module_target`) and return the
    cached ``.ko``. Raises :class:`ModuleUnsupported` when the kernel cannot
    have the module, :class:`LabError` when a step fails. ``timings``, if
    given, receives the duration of each step in seconds.
    """
    reason = module_supported(kernel, name)
    if reason is not None:
        raise ModuleUnsupported(reason)
    target = module_target(kernel)
    kver, cc = target.kver, target.cc
    gcc = compiler(cc, target.arch)
    timings = {} if timings is None else timings
    if name == "p2p_violate":
        sources: Optional[Dict[str, bytes]] = _violate_sources()
        # Debian headers: the key of before build trees existed (cached modules stay valid).
        extra = () if target.headers.tree is None else target.headers.key()
        key = _digest(sources, name, kver, cc, *extra)
        origin = {"sources": "drgn_p2p/lab/kmod"}
    elif target.hmm_tree is not None:
        sources = {fname: (target.hmm_tree / "lib" / fname).read_bytes() for fname in _TEST_HMM_FILES}
        sources["Kbuild"] = _TEST_HMM_KBUILD.encode()
        key = _digest(sources, name, kver, cc, *target.headers.key())
        origin = {"sources": f"{target.hmm_tree}/lib"}
    else:
        sources = None  # fetched from the kernel's linux-source package on a miss
        extra = (str(target.source_version),) if target.headers.tree is None else target.headers.key()
        key = _digest({"Kbuild": _TEST_HMM_KBUILD.encode()}, name, kver, cc, *extra)
    ko = _cached_module(kver, name, key)
    if ko.is_file() and (ko.parent / _MARKER).exists():
        return ko

    _need_root()
    start = time.monotonic()
    where = f"against {target.headers.tree}" if target.headers.tree is not None else "against its Debian headers"
    _console.print(f"[bold]building {name}[/] for {kver} {where} with {gcc.binary} in a {target.suite} chroot")
    with _lock(chroots_dir() / f"{target.suite}.lock"):
        root = _ensure_chroot_locked(target.suite, gcc.package, timings)
        out = ko.parent
        _remove_tree(out)
        out.mkdir(parents=True)
        log = out / "build.log"
        work = root / "build" / f"{kver}-{name}-{key}"
        _remove_tree(work)
        work.mkdir(parents=True)
        try:
            if sources is not None:
                for fname, data in sources.items():
                    (work / fname).write_bytes(data)
            else:
                suite = target.source_suite or target.suite
                used = _extract_test_hmm(kver, suite, target.source_version, work, timings)
                (work / "Kbuild").write_text(_TEST_HMM_KBUILD)
                origin = {"sources": f"{_source_package(kver)}={used}"}
            with _headers_in(root, target, log, timings) as build, _step(f"compile {name}", timings), \
                    _proc_mounted(root):
                _chroot(
                    root,
                    ["make", "-C", build, f"M=/{work.relative_to(root)}", f"CC={gcc.binary}", *gcc.make_args,
                     # Skip pahole (BTF for modules): not in the chroot, not needed.
                     "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"],
                    log=log,
                )
            built = work / f"{name}.ko"
            if not built.is_file():
                raise LabError(f"make produced no {name}.ko (log: {log})")
            shutil.copy2(built, ko)
        finally:
            _remove_tree(work)
    magic = vermagic(ko)
    if magic.split()[0] != kver:
        raise LabError(f"{ko} has vermagic {magic!r}, not for {kver}")
    (out / _MARKER).write_text(
        json.dumps({"kver": kver, "cc": cc, "vermagic": magic, **origin,
                    "headers": str(target.headers.tree or f"linux-headers-{kver}={target.headers.package_version}"),
                    "seconds": round(time.monotonic() - start, 1)}) + "\n"
    )
    _console.print(f"[green]{name} for {kver}: {ko} ({time.monotonic() - start:.0f} s)[/]")
    return ko


def build_holder(arch: str = apt.HOST_ARCH) -> Path:
    """
    Build ``violate_holder`` statically for Debian *arch* (the host's gcc, or
    the cross compiler the guest programs use, :data:`.scenarios.GUEST_CC`)
    and return the cached binary. An x86-64 guest runs it from the host's
    root; an arm64 guest gets it through its out share.
    """
    from .scenarios import GUEST_CC

    if arch not in GUEST_CC:
        raise LabError(f"no compiler for {arch} guest programs")
    cc, packages = GUEST_CC[arch]
    sources = {name: (SOURCE_DIR / name).read_bytes() for name in ("violate_holder.c", "p2p_violate.h")}
    key = _digest(sources, "violate_holder", cc)
    out = kmods_dir() / "holder" / key
    binary = out / "violate_holder"
    if binary.is_file():
        return binary
    if shutil.which(cc) is None:
        raise LabError(f"{cc} not found: the holder needs {packages}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "violate_holder.tmp"
    _run([cc, "-O2", "-Wall", "-static", "-I", str(SOURCE_DIR), "-o", str(tmp),
          str(SOURCE_DIR / "violate_holder.c")])
    tmp.rename(binary)
    return binary
