# SPDX-License-Identifier: GPL-2.0-or-later
"""
Lab kernels
-----------

The kernels the lab boots: Debian builds pinned in ``kernels.json`` (``6.1``
from bookworm, ``6.12`` from trixie, ``newest`` from sid; entries named
``arm64/NAME`` are the arm64 lab's, with their Debian ``arch`` and
``flavour``), fetched with the private apt configuration of
:mod:`drgn_p2p.lab.apt` for their architecture and normalised into
``cache_dir()/kernels/<KVER>/``::

    vmlinuz  config  System.map  vmlinux  kernel.json  .complete
    lib/modules/<KVER>/...        (with modules.dep from depmod)

``vmlinux`` is the real ELF with DWARF from the ``-dbg`` package, and
``System.map`` the real one from there too (the image ships a placeholder);
the -dbg archive is read once, up to vmlinux, and nothing else is extracted. ``.complete`` is written last; a directory without it is
fetched again from scratch. The .debs are deleted afterwards.

A pinned kernel that has left the mirror is replaced by the current one of its
suite, found through the suite's ``linux-image-FLAVOUR`` metapackage
(``linux-image-amd64``, ``linux-image-arm64``, ``linux-image-arm64-16k``).
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import click
from rich.console import Console

from drgn_p2p.elf import elf_build_id, elf_sections
from drgn_p2p.lab import LabError, apt, cache_dir

__all__ = (
    "KERNEL_NAMES",
    "KernelSpec",
    "Kernel",
    "cache_dir",
    "kernels_dir",
    "manifest",
    "resolve",
    "ensure_kernel",
    "cached_kernels",
    "user_kernel",
    "parse_config",
    "cc_from_config",
    "kver_from_meta_depends",
    "image_packages",
    "elf_sections",
    "elf_build_id",
    "bzimage_version",
    "bzimage_release",
    "vmlinux_matches",
    "fetch_command",
)

#: Names of the pinned kernels, in manifest order.
KERNEL_NAMES = ("6.1", "6.12", "newest")
#: Debian architectures the lab can boot, the host's first.
ARCHES = ("amd64", "arm64")

#: Config options recorded in kernel.json (None when not set).
RECORDED_CONFIG = (
    "CONFIG_ZONE_DEVICE",
    "CONFIG_DEVICE_PRIVATE",
    "CONFIG_PCI_P2PDMA",
    "CONFIG_FS_DAX",
    "CONFIG_DEV_DAX",
    "CONFIG_TEST_HMM",
    "CONFIG_HMM_MIRROR",
    "CONFIG_ARCH_HAS_PTE_DEVMAP",
    "CONFIG_ARCH_HAS_PTE_SPECIAL",
    "CONFIG_ARCH_SUPPORTS_PMD_PFNMAP",
    "CONFIG_ARCH_SUPPORTS_PUD_PFNMAP",
    "CONFIG_VFIO_PCI",
    "CONFIG_FW_CFG_SYSFS",
    "CONFIG_PGTABLE_LEVELS",
    "CONFIG_CC_VERSION_TEXT",
)

_MANIFEST = Path(__file__).with_name("kernels.json")
_MARKER = ".complete"
_RECORD = "kernel.json"
_console = Console(stderr=True)


@dataclass(frozen=True)
class KernelSpec:
    """A Debian kernel to fetch: its suite, release (KVER), source version and packages."""

    name: str
    suite: str
    kver: str
    version: str
    packages: Tuple[str, ...]
    dbg: str
    #: Debian architecture of the packages (``amd64``, ``arm64``).
    arch: str = "amd64"
    #: Debian kernel flavour: the ``linux-image-FLAVOUR`` metapackage that names the suite's current kernel.
    flavour: str = "amd64"

    @classmethod
    def from_manifest(cls, name: str, entry: Mapping[str, object]) -> "KernelSpec":
        arch = str(entry.get("arch", "amd64"))
        return cls(
            name=name,
            suite=str(entry["suite"]),
            kver=str(entry["kver"]),
            version=str(entry["version"]),
            packages=tuple(str(p) for p in entry["packages"]),  # type: ignore[union-attr]
            dbg=str(entry["dbg"]),
            arch=arch,
            flavour=str(entry.get("flavour", arch)),
        )

    def all_packages(self) -> Tuple[str, ...]:
        return self.packages + (self.dbg,)


@dataclass(frozen=True)
class Kernel:
    """A kernel ready to boot and to read with drgn."""

    name: str
    kver: str
    dir: Path
    vmlinux: Optional[Path]
    vmlinuz: Path
    config: Dict[str, str] = field(repr=False)
    modules_dir: Optional[Path]
    suite: Optional[str] = None
    cc: Optional[str] = None
    system_map: Optional[Path] = None
    #: Debian architecture the kernel runs on (``amd64``, ``arm64``).
    arch: str = "amd64"
    #: The kernel's build tree when it was given as one (``--kernel-dir``):
    #: modules are built against it.
    build: Optional[Path] = None

    @classmethod
    def from_dir(cls, kdir: Path) -> "Kernel":
        """Load a fetched kernel from its cache directory."""
        record = json.loads((kdir / _RECORD).read_text())
        kver = record["kver"]
        return cls(
            name=record["name"],
            kver=kver,
            dir=kdir,
            vmlinux=kdir / "vmlinux",
            vmlinuz=kdir / "vmlinuz",
            config=parse_config((kdir / "config").read_text()),
            modules_dir=kdir / "lib" / "modules" / kver,
            suite=record["suite"],
            cc=record.get("cc"),
            system_map=kdir / "System.map" if (kdir / "System.map").exists() else None,
            arch=record.get("arch", "amd64"),
        )


# ---------------------------------------------------------------- pure helpers


def parse_config(text: str) -> Dict[str, str]:
    """Parse a kernel .config into ``{"CONFIG_X": "y", ...}``; unset options are absent, strings unquoted."""
    config = {}
    for line in text.splitlines():
        if not line.startswith("CONFIG_") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        config[key] = value
    return config


def cc_from_config(config: Mapping[str, str]) -> Optional[str]:
    """
    Return the versioned gcc that built a kernel (e.g. ``"gcc-14"``) from its
    CONFIG_CC_VERSION_TEXT, or None if it was not gcc.
    """
    text = config.get("CONFIG_CC_VERSION_TEXT", "")
    m = re.search(r"\bgcc-(\d+)\b", text)
    if m:
        return f"gcc-{m.group(1)}"
    m = re.match(r"\S*gcc\S* \(.*\) (\d+)\.", text)
    return f"gcc-{m.group(1)}" if m else None


def kver_from_meta_depends(depends: Sequence[str]) -> str:
    """
    Return the KVER named by the Depends of a ``linux-image-<flavour>``
    metapackage (``linux-image-6.12.117+deb13-amd64`` -> ``6.12.117+deb13-amd64``).
    """
    for dep in depends:
        m = re.fullmatch(r"linux-image-(\d+\.\d+\S*?)(-unsigned)?", dep)
        if m:
            return m.group(1)
    raise LabError(f"no linux-image-<KVER> among the metapackage's dependencies {list(depends)}")


def image_packages(kver: str, available: Sequence[str], image_depends: Sequence[str]) -> List[str]:
    """
    Choose the packages that hold the kernel image and modules of ``kver``:
    ``linux-image-KVER-unsigned`` when the suite has it (6.x), else the
    dependencies of ``linux-image-KVER`` that carry KVER in their name (the
    split ``linux-base``/``linux-binary``/``linux-modules`` of 7.x).
    """
    unsigned = f"linux-image-{kver}-unsigned"
    if unsigned in available:
        return [unsigned]
    split = [d for d in image_depends if d.endswith(f"-{kver}") and not d.startswith("linux-image-")]
    if not split:
        raise LabError(f"cannot tell which packages hold the {kver} image")
    return split


#: ``struct arm64_image_header``: ``magic`` at offset 0x38 (Documentation/arch/arm64/booting.rst).
_ARM64_IMAGE_MAGIC = b"ARM\x64"


def bzimage_version(path: Path) -> str:
    """
    Return the version string of a kernel image, e.g.
    ``6.12.117+deb13-amd64 (builder@host) #1 SMP ...``: from an x86 bzImage's
    setup header, or from the ``linux_banner`` inside an (uncompressed, as
    Debian ships it) arm64 ``Image``.
    """
    with open(path, "rb") as f:
        head = f.read(0x8000)
    if head[0x38:0x3C] == _ARM64_IMAGE_MAGIC:
        return _arm64_image_version(path)
    if head[0x202:0x206] != b"HdrS":
        raise LabError(f"{path} is neither an x86 bzImage nor an arm64 Image")
    offset, = struct.unpack_from("<H", head, 0x20E)
    text = head[0x200 + offset :].split(b"\0", 1)[0].decode(errors="replace")
    if not text.split():
        raise LabError(f"{path} carries no kernel version string")
    return text


def _arm64_image_version(path: Path) -> str:
    """The text after ``Linux version `` of an arm64 Image's banner, up to its newline."""
    data = path.read_bytes()
    start = data.find(b"Linux version ")
    if start < 0:
        raise LabError(f"{path} is an arm64 Image without a Linux version banner (compressed?)")
    end = data.find(b"\n", start)
    return data[start + len("Linux version ") : end].decode(errors="replace")


def bzimage_release(path: Path) -> str:
    """Return the release (``uname -r``) that an x86 bzImage announces in its setup header."""
    return bzimage_version(path).split()[0]


def vmlinux_matches(vmlinux: Path, bzimage: Path) -> bool:
    """
    Whether ``vmlinux`` is the build of ``bzimage``: its ``linux_banner`` in
    .rodata names the same release and the same ``#N ... (date)`` version.
    """
    text = bzimage_version(bzimage)
    release, _, rest = text.partition(" ")
    uts = rest.split(") ", 1)[-1]
    offset, size = elf_sections(vmlinux)[".rodata"]
    with open(vmlinux, "rb") as f:
        f.seek(offset)
        rodata = f.read(size)
    prefix = f"Linux version {release} (".encode()
    start = rodata.find(prefix)
    while start >= 0:
        end = rodata.find(b"\n", start)
        if rodata[start:end].endswith(uts.encode()):
            return True
        start = rodata.find(prefix, start + 1)
    return False


# ---------------------------------------------------------------- manifest and resolution


def kernels_dir() -> Path:
    """Return the directory holding one subdirectory per fetched KVER."""
    return cache_dir() / "kernels"


def manifest(arch: str = "amd64") -> Dict[str, KernelSpec]:
    """Return the pinned kernels of ``kernels.json`` for Debian architecture *arch*, by name.

    The host architecture's entries are named plainly (``newest``); another
    architecture's are ``ARCH/NAME`` in the file and ``NAME`` here.
    """
    data = json.loads(_MANIFEST.read_text())
    specs = {}
    for key, entry in data.items():
        spec = KernelSpec.from_manifest(key.split("/", 1)[-1], entry)
        if spec.arch == arch:
            specs[spec.name] = spec
    return specs


def _spec(name: str, arch: str = "amd64") -> KernelSpec:
    specs = manifest(arch)
    if not specs:
        raise LabError(f"the lab has no {arch} kernels: choose --arch {' or '.join(ARCHES)}")
    if name not in specs:
        raise LabError(f"unknown {arch} kernel {name!r}: choose one of {', '.join(specs)}")
    return specs[name]


def _offered(spec: KernelSpec) -> bool:
    """Whether the suite still offers every package of ``spec`` at its pinned version."""
    offered = {(c.package, c.version, c.suite) for c in apt.madison(*spec.all_packages(), arch=spec.arch)}
    return all((p, spec.version, spec.suite) in offered for p in spec.all_packages())


def resolve(spec: KernelSpec) -> KernelSpec:
    """
    Return ``spec`` if its suite still offers it, else the suite's current
    kernel as named by its ``linux-image-FLAVOUR`` metapackage.
    """
    if _offered(spec):
        return spec
    meta, arch = f"linux-image-{spec.flavour}", spec.arch
    version = apt.version_in(meta, spec.suite, arch=arch)
    if version is None:
        raise LabError(f"{spec.suite} offers no {meta} ({arch})")
    kver = kver_from_meta_depends(apt.depends(f"{meta}={version}", arch=arch))
    unsigned = f"linux-image-{kver}-unsigned"
    available = [c.package for c in apt.madison(unsigned, arch=arch) if c.suite == spec.suite]
    image_deps = [] if available else apt.depends(f"linux-image-{kver}={version}", arch=arch)
    current = KernelSpec(
        name=spec.name,
        suite=spec.suite,
        kver=kver,
        version=version,
        packages=tuple(image_packages(kver, available, image_deps)),
        dbg=f"linux-image-{kver}-dbg",
        arch=arch,
        flavour=spec.flavour,
    )
    if not _offered(current):
        raise LabError(f"{spec.suite} does not offer every package of {kver} at {version}")
    _console.print(f"[yellow]{spec.name}: pinned {spec.kver} is gone from {spec.suite}; using {kver}[/]")
    return current


# ---------------------------------------------------------------- fetching


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Show a spinner for a long step, then its duration."""
    start = time.monotonic()
    with _console.status(what):
        yield
    _console.print(f"  {what}: {time.monotonic() - start:.1f} s")


@contextmanager
def _fetch_lock() -> Iterator[None]:
    """Serialise fetches between processes sharing the cache."""
    kernels_dir().mkdir(parents=True, exist_ok=True)
    with open(kernels_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check(argv: Sequence[str], **kwargs: object) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LabError(f"{argv[0]} {argv[1]} failed: {last}")


def _first(root: Path, candidates: Sequence[str], what: str) -> Path:
    for rel in candidates:
        if (root / rel).exists():
            return root / rel
    raise LabError(f"the image packages hold no {what} (looked for {', '.join(candidates)})")


def _normalise(root: Path, kdir: Path, kver: str) -> None:
    """Move vmlinuz, config, System.map and the modules tree from an extracted root into ``kdir``."""
    moddir = _first(root, [f"usr/lib/modules/{kver}", f"lib/modules/{kver}"], "modules directory")
    for name in ("vmlinuz", "config", "System.map"):
        found = _first(root, [f"boot/{name}-{kver}", f"{moddir.relative_to(root)}/{name}"], name)
        shutil.move(str(found), str(kdir / name))
    (kdir / "lib" / "modules").mkdir(parents=True, exist_ok=True)
    shutil.move(str(moddir), str(kdir / "lib" / "modules" / kver))


def _debug_members(kver: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Where a -dbg package may keep the vmlinux and the real System.map of ``kver``."""
    vmlinux = (
        f"usr/lib/debug/boot/vmlinux-{kver}",
        f"usr/lib/debug/lib/modules/{kver}/vmlinux",
        f"usr/lib/debug/vmlinux-{kver}",
    )
    system_map = (f"usr/lib/debug/boot/System.map-{kver}", f"usr/lib/debug/lib/modules/{kver}/System.map")
    return vmlinux, system_map


def _link_target(member: tarfile.TarInfo) -> str:
    """The archive path a symlink member points to."""
    if member.linkname.startswith("/"):
        return os.path.normpath(member.linkname.lstrip("/"))
    return os.path.normpath(os.path.join(os.path.dirname(member.name), member.linkname))


def _extract_debug(deb: Path, kver: str, kdir: Path) -> None:
    """
    Stream the data archive of a -dbg package once and extract the first
    *regular file* among the vmlinux candidates (following symlinks: in 7.x
    ``boot/vmlinux-KVER`` is a link to ``lib/modules/KVER/vmlinux``, which
    comes near the end), plus the real System.map if it comes before it
    (else the image's placeholder System.map is removed). The rest of the
    archive is never read.
    """
    (kdir / "System.map").unlink(missing_ok=True)
    vmlinux, system_map = (set(c) for c in _debug_members(kver))
    errors = tempfile.TemporaryFile()
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=errors)
    assert dpkg.stdout is not None
    found = False
    try:
        with tarfile.open(fileobj=dpkg.stdout, mode="r|", bufsize=1 << 20) as tar:
            for member in tar:
                name = os.path.normpath(member.name)
                if member.issym() and name in vmlinux | system_map:
                    (vmlinux if name in vmlinux else system_map).add(_link_target(member))
                elif member.isfile() and name in system_map:
                    _save(tar, member, kdir / "System.map")
                elif member.isfile() and name in vmlinux:
                    _save(tar, member, kdir / "vmlinux")
                    found = True
                    break
    finally:
        dpkg.stdout.close()
        dpkg.wait()  # dpkg-deb dies of SIGPIPE when the loop stops early: expected
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
        errors.close()
    if not found:
        raise LabError(f"{deb.name} holds no vmlinux for {kver}{': ' + message if message else ''}")


def _save(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    src = tar.extractfile(member)
    assert src is not None
    with open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def _verify_vmlinux(path: Path, bzimage: Path) -> Optional[str]:
    """Check that ``path`` is an ELF with DWARF built with ``bzimage``; return its build ID."""
    try:
        sections = elf_sections(path)
    except ValueError as e:
        raise LabError(str(e)) from None
    if ".debug_info" not in sections:
        raise LabError(f"{path} has no .debug_info section")
    if not vmlinux_matches(path, bzimage):
        raise LabError(f"{path} is not the build of {bzimage}: their version banners differ")
    return elf_build_id(path, sections)


def _record(spec: KernelSpec, pin: str, config: Mapping[str, str], build_id: Optional[str]) -> Dict[str, object]:
    return {
        "name": spec.name,
        "arch": spec.arch,
        "suite": spec.suite,
        "kver": spec.kver,
        "pin": pin,
        "version": spec.version,
        "packages": {p: spec.version for p in spec.all_packages()},
        "cc": cc_from_config(config),
        "build_id": build_id,
        "config": {key: config.get(key) for key in RECORDED_CONFIG},
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fetch(spec: KernelSpec, pin: str, kdir: Path) -> None:
    """Download, extract and normalise ``spec`` into ``kdir``; write the marker last."""
    if kdir.exists():
        shutil.rmtree(kdir)
    debs, staging = kdir / ".debs", kdir / ".staging"
    staging.mkdir(parents=True)
    _console.print(f"[bold]fetching {spec.name}[/] ({spec.kver}, {spec.suite}) into {kdir}")
    pinned = [f"{p}={spec.version}" for p in spec.packages]
    images = apt.download(pinned, debs, arch=spec.arch)
    (dbg,) = apt.download([f"{spec.dbg}={spec.version}"], debs, arch=spec.arch)
    with _step("extract image and modules"):
        for deb in images:
            _check(["dpkg-deb", "-x", str(deb), str(staging)])
        _normalise(staging, kdir, spec.kver)
    with _step("depmod"):
        _check(["depmod", "-b", str(kdir), spec.kver])
    with _step("extract vmlinux from -dbg"):
        _extract_debug(dbg, spec.kver, kdir)
        build_id = _verify_vmlinux(kdir / "vmlinux", kdir / "vmlinuz")
    config = parse_config((kdir / "config").read_text())
    record = _record(spec, pin, config, build_id)
    (kdir / _RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(debs)
    shutil.rmtree(staging)
    (kdir / _MARKER).touch()


def _complete(kdir: Path) -> bool:
    return (kdir / _MARKER).exists() and (kdir / _RECORD).exists()


def cached_kernels() -> List[Kernel]:
    """Return every completely fetched kernel in the cache, sorted by KVER."""
    root = kernels_dir()
    if not root.is_dir():
        return []
    return [Kernel.from_dir(d) for d in sorted(root.iterdir()) if d.is_dir() and _complete(d)]


def _cached(spec: KernelSpec) -> Optional[Kernel]:
    """A cached kernel for ``spec``: its pinned KVER, or a replacement fetched for that same pin."""
    kdir = kernels_dir() / spec.kver
    if _complete(kdir):
        return Kernel.from_dir(kdir)
    for kernel in cached_kernels():
        record = json.loads((kernel.dir / _RECORD).read_text())
        if (record.get("name") == spec.name and record.get("pin") == spec.kver
                and record.get("arch", "amd64") == spec.arch):
            return kernel
    return None


def ensure_kernel(name: str, arch: str = "amd64") -> Kernel:
    """
    Return the pinned kernel ``name`` (``"6.1"``, ``"6.12"`` or ``"newest"``)
    of Debian architecture *arch*, fetching it first unless it is cached. A
    cached kernel needs no network.
    """
    spec = _spec(name, arch)
    kernel = _cached(spec)
    if kernel is not None:
        return kernel
    with _fetch_lock():
        kernel = _cached(spec)  # another process may have fetched it meanwhile
        if kernel is not None:
            return kernel
        current = resolve(spec)
        kdir = kernels_dir() / current.kver
        if not _complete(kdir):
            start = time.monotonic()
            _fetch(current, spec.kver, kdir)
            _console.print(f"[green]{name}: {current.kver} ready in {time.monotonic() - start:.0f} s[/]")
        return Kernel.from_dir(kdir)


def _user_config(kver: str, bzimage: Path, modules_dir: Optional[Path], config: Optional[Path]) -> Dict[str, str]:
    if config is not None:
        if not config.is_file():
            raise LabError(f"{config} does not exist")
        return parse_config(config.read_text())
    candidates = [bzimage.parent / f"config-{kver}", bzimage.parent / "config", bzimage.parent / ".config"]
    if modules_dir is not None:
        candidates[:0] = [modules_dir / "config", modules_dir / "build" / ".config"]
    candidates.append(Path("/boot") / f"config-{kver}")
    for path in candidates:
        if path.is_file():
            return parse_config(path.read_text())
    raise LabError(f"no config found for {kver} (looked in {', '.join(map(str, candidates))}); pass --config")


def _user_modules(kver: str, bzimage: Path) -> Optional[Path]:
    """The module tree of a kernel image laid out as a package or ``make
    install`` lays it out: ``lib/modules/KVER`` beside the image (virtme-ng's
    layout) or beside its ``boot/`` (``/boot`` → ``/lib/modules``, and
    ``usr/lib/modules`` where /lib is merged into /usr), or the image's own
    directory when it is the module tree (Debian 7.x ships
    ``usr/lib/modules/KVER/vmlinuz``)."""
    if bzimage.parent.name == kver and (bzimage.parent / "modules.order").is_file():
        return bzimage.parent
    for root in (bzimage.parent, bzimage.parent.parent):
        for rel in ("lib/modules", "usr/lib/modules"):
            if (root / rel / kver).is_dir():
                return root / rel / kver
    return None


def _modules_cache(kver: str, source: Path, changed: Path) -> Path:
    """The lab's directory for a module tree made from *source*, named after
    it and the time *changed* was last modified (a rebuild makes a new one)."""
    stamp = f"{source}\0{changed.stat().st_mtime_ns}"
    return cache_dir() / "modules" / f"{kver}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"


def _with_modules_dep(modules_dir: Path, kver: str) -> Path:
    """
    Return *modules_dir* if depmod has run on it, else the lab's own copy of
    it in the cache (a tree of symlinks to its files) with ``modules.dep``
    from ``depmod``: a module tree extracted from a package has none, and the
    guest could not load a module without it.
    """
    if (modules_dir / "modules.dep").is_file():
        return modules_dir
    if shutil.which("depmod") is None:
        raise LabError(f"{modules_dir} has no modules.dep and depmod is not installed (install kmod, "
                       f"or run 'depmod -b ROOT {kver}' on the tree, ROOT being the directory above lib/modules)")
    real = modules_dir.resolve()
    root = _modules_cache(kver, real, real)
    copy = root / "lib" / "modules" / kver
    if (copy / "modules.dep").is_file():
        return copy
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root.parent))
    try:
        target = staging / "lib" / "modules" / kver
        for dirpath, _, filenames in os.walk(real):
            here = target / Path(dirpath).relative_to(real)
            here.mkdir(parents=True, exist_ok=True)
            for name in filenames:
                (here / name).symlink_to(Path(dirpath) / name)
        with _step(f"depmod on the lab's copy of {modules_dir}"):
            _check(["depmod", "-b", str(staging), kver])
        shutil.rmtree(root, ignore_errors=True)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return copy


def user_kernel(
    bzimage: Path, vmlinux: Path, modules_dir: Optional[Path] = None, config: Optional[Path] = None,
    build: Optional[Path] = None,
) -> Kernel:
    """
    Describe a kernel the user built or installed: nothing is downloaded. The
    release comes from ``modules_dir``'s name or from the bzImage header; the
    config from *config*, else ``modules_dir`` (``config`` or ``build/.config``),
    ``config-<release>``, ``config`` or ``.config`` beside the bzImage, or
    ``/boot/config-<release>``; with none of them it is an error. The module
    tree is *modules_dir*, else ``lib/modules/<release>`` beside the image or
    its directory; a tree without ``modules.dep`` is used through the lab's
    own copy, on which depmod has run. *build* is the kernel's build tree,
    if it was given as one, else the module tree's ``build`` link when it
    leads to a built tree (modules are then built against it).
    """
    bzimage, vmlinux = Path(bzimage), Path(vmlinux)
    for path in (bzimage, vmlinux):
        if not path.is_file():
            raise LabError(f"{path} does not exist")
    modules_dir = Path(modules_dir) if modules_dir is not None else None
    if modules_dir is not None and not modules_dir.is_dir():
        raise LabError(f"{modules_dir} is not a directory")
    kver = modules_dir.name if modules_dir is not None else bzimage_release(bzimage)
    if modules_dir is None:
        modules_dir = _user_modules(kver, bzimage)
    config = _user_config(kver, bzimage, modules_dir, Path(config) if config else None)
    if build is None and modules_dir is not None and (modules_dir / "build" / "Module.symvers").is_file():
        # make modules_install links the build tree there: modules are built against it.
        build = (modules_dir / "build").resolve()
    if modules_dir is not None:
        modules_dir = _with_modules_dep(modules_dir, kver)
    return Kernel(
        name="user",
        kver=kver,
        dir=bzimage.parent,
        vmlinux=vmlinux,
        vmlinuz=bzimage,
        config=config,
        modules_dir=modules_dir,
        cc=cc_from_config(config),
        build=build,
    )


def build_tree_kernel(build: Path, modules_dir: Optional[Path] = None) -> Kernel:
    """
    Describe a kernel from its build tree *build*: ``arch/x86/boot/bzImage``,
    ``vmlinux`` and ``.config`` as ``make`` leaves them, the modules from
    *modules_dir*, else ``lib/modules/KVER`` under *build* (``make
    modules_install INSTALL_MOD_PATH=BUILD``), else the modules built in place
    (listed in ``modules.order``: the lab's own tree of symlinks to them, on
    which depmod runs).
    """
    build = Path(build)
    if not build.is_dir():
        raise LabError(f"{build} is not a directory")
    bzimage, vmlinux, config = build / "arch" / "x86" / "boot" / "bzImage", build / "vmlinux", build / ".config"
    missing = [str(p.relative_to(build)) for p in (bzimage, vmlinux, config) if not p.is_file()]
    if missing:
        raise LabError(f"{build} is not a built kernel tree: no {', '.join(missing)}")
    if modules_dir is None:
        kver = bzimage_release(bzimage)
        installed = build / "lib" / "modules" / kver
        if installed.is_dir():
            modules_dir = installed
        elif (build / "modules.order").is_file():
            modules_dir = _in_place_modules(build, kver)
    return user_kernel(bzimage, vmlinux, modules_dir, config, build=build)


def _in_place_modules(build: Path, kver: str) -> Path:
    """A ``lib/modules/KVER`` tree in the cache whose ``kernel/`` holds a symlink
    to every module of *build*'s ``modules.order`` (``path/x.o`` since v6.2,
    commit f65a486821cf, ``kernel/path/x.ko`` before), depmod run on it."""
    modules = []
    for line in (build / "modules.order").read_text().split():
        rel = line[len("kernel/"):] if line.startswith("kernel/") else line
        ko = build / (rel[:-2] + ".ko" if rel.endswith(".o") else rel)
        if not ko.is_file():
            raise LabError(f"{build}: {ko.relative_to(build)} of modules.order is not built (run make modules)")
        modules.append(ko)
    root = _modules_cache(kver, build.resolve(), build / "modules.order")
    tree = root / "lib" / "modules" / kver
    if (tree / "modules.dep").is_file():
        return tree
    shutil.rmtree(root, ignore_errors=True)
    for ko in modules:
        link = tree / "kernel" / ko.relative_to(build)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ko.resolve())
    (tree / "modules.order").write_text("".join(f"kernel/{ko.relative_to(build)}\n" for ko in modules))
    for name in ("modules.builtin", "modules.builtin.modinfo"):
        if (build / name).is_file():
            (tree / name).symlink_to((build / name).resolve())
    if shutil.which("depmod") is None:
        raise LabError(f"depmod is not installed (install kmod): it must index the modules of {build}")
    with _step(f"depmod on the lab's tree of {build}'s modules"):
        _check(["depmod", "-b", str(root), kver])
    return tree


# ---------------------------------------------------------------- CLI


@click.command("fetch")
@click.option("--arch", type=click.Choice(ARCHES), default="amd64", show_default=True,
              help="Debian architecture of the kernels (arm64: newest, newest-16k, 6.12).")
@click.argument("names", nargs=-1)
def fetch_command(arch: str, names: Tuple[str, ...]) -> None:
    """Fetch the lab's kernels (default: every one pinned for --arch) and print where each is cached."""
    pinned = list(manifest(arch))
    unknown = [n for n in names if n not in pinned]
    if unknown:
        raise click.BadParameter(f"unknown {arch} kernel {unknown[0]!r}: choose from {', '.join(pinned)}",
                                 param_hint="NAMES")
    default = ("newest", "6.12", "6.1") if arch == "amd64" else tuple(pinned)
    for name in names or default:
        try:
            kernel = ensure_kernel(name, arch)
        except LabError as e:
            raise click.ClickException(str(e)) from e
        click.echo(f"{name}\t{kernel.kver}\t{kernel.dir}")
