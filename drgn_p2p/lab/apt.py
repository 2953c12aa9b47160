# SPDX-License-Identifier: GPL-2.0-or-later
"""
Private apt configuration
-------------------------

An apt configuration of the lab's own, kept in the cache: its own
``sources.list``, lists directory and archives directory under
``cache_dir()/apt`` (``cache_dir()/apt-ARCH`` for another Debian architecture,
e.g. ``arm64`` for the arm64 lab's kernels and guest packages). It reaches
bookworm, trixie and sid ``main`` on the same Debian mirror the system's apt
already uses, and it never touches the system's sources, lists or package cache.

Nothing here installs packages: lookups (``apt-cache madison``/``show``) and
``apt-get download`` only.
"""

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from drgn_p2p.lab import LabError, cache_dir

__all__ = (
    "SUITES",
    "Candidate",
    "apt_dir",
    "mirror",
    "options",
    "update",
    "madison",
    "version_in",
    "show",
    "depends",
    "parse_madison",
    "parse_stanzas",
    "parse_depends",
    "download",
)

#: The Debian suites the private configuration reaches (``main`` only).
SUITES = ("bookworm", "trixie", "sid")

#: The host's Debian architecture; every function takes ``arch`` to reach another one's packages.
HOST_ARCH = "amd64"

#: Lists older than this are refreshed by :func:`update`.
MAX_LIST_AGE = 6 * 3600

_console = Console(stderr=True)


class Candidate(NamedTuple):
    """One version of a package offered by one suite (a line of ``apt-cache madison``)."""

    package: str
    version: str
    suite: str


def apt_dir(arch: str = HOST_ARCH) -> Path:
    """Return the directory holding the private apt configuration for Debian architecture *arch*."""
    return cache_dir() / ("apt" if arch == HOST_ARCH else f"apt-{arch}")


def _sources_list(arch: str) -> Path:
    return apt_dir(arch) / "sources.list"


def _stamp(arch: str) -> Path:
    return apt_dir(arch) / "lists" / ".updated"


def _run(argv: Sequence[str], cwd: Optional[Path] = None) -> str:
    """Run an apt command with C-locale output; return its stdout or raise LabError."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as e:
        raise LabError(f"{argv[0]} not found: the lab needs a Debian host with apt") from e
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LabError(f"{_describe(argv)} failed: {last}")
    return proc.stdout


def _describe(argv: Sequence[str]) -> str:
    """The command line without its ``-o key=value`` options, for messages."""
    words = list(argv)
    return " ".join(w for i, w in enumerate(words) if w != "-o" and (i == 0 or words[i - 1] != "-o"))


def mirror() -> str:
    """
    Return the Debian mirror the system's apt already uses (its first
    non-security repository URI), with a trailing slash.
    """
    out = _run(["apt-get", "indextargets", "--format", "$(REPO_URI)"])
    for uri in out.split():
        if "-security" not in uri and "debian" in uri:
            return uri if uri.endswith("/") else uri + "/"
    raise LabError("no Debian mirror in the system's apt sources (apt-get indextargets)")


def options(arch: str = HOST_ARCH) -> List[str]:
    """Return the ``-o`` options that make apt-get/apt-cache use the private configuration of *arch*."""
    d = apt_dir(arch)
    opts = {
        "Dir::Etc::sourcelist": str(_sources_list(arch)),
        "Dir::Etc::sourceparts": "/dev/null",
        "Dir::State::Lists": str(d / "lists"),
        "Dir::State::status": "/dev/null",
        "Dir::Cache": str(d / "cache"),
        # Keep binary caches here even where the host disables them (Docker images).
        "Dir::Cache::pkgcache": "pkgcache.bin",
        "Dir::Cache::srcpkgcache": "srcpkgcache.bin",
        "APT::Architecture": arch,
        "APT::Architectures": arch,
    }
    if os.geteuid() == 0:
        # The _apt sandbox user cannot write into root's cache directory.
        opts["APT::Sandbox::User"] = "root"
    return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]


def _write_sources(arch: str) -> bool:
    """Write the private sources.list and its directories; return whether it changed."""
    d = apt_dir(arch)
    for sub in ("lists/partial", "cache/archives/partial"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    base = mirror()
    text = "".join(f"deb {base} {suite} main\n" for suite in SUITES)
    path = _sources_list(arch)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def _lists_fresh(arch: str) -> bool:
    stamp = _stamp(arch)
    return stamp.exists() and time.time() - stamp.stat().st_mtime < MAX_LIST_AGE


_checked: set = set()


def update(force: bool = False, arch: str = HOST_ARCH) -> None:
    """
    Run ``apt-get update`` on the private configuration of *arch*, unless its
    lists are younger than six hours (and the sources did not change).
    Checked once per process and architecture unless ``force``.
    """
    if arch in _checked and not force:
        return
    changed = _write_sources(arch)
    if force or changed or not _lists_fresh(arch):
        with _console.status(f"apt-get update (bookworm, trixie, sid; {arch})"):
            _run(["apt-get", *options(arch), "update"])
        _stamp(arch).touch()
    _checked.add(arch)


def parse_madison(text: str) -> List[Candidate]:
    """
    Parse ``apt-cache madison`` output, e.g.
    ``linux-image-amd64 | 6.1.176-1 | http://host/debian bookworm/main amd64 Packages``.
    """
    result = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 3 or not fields[2].endswith("Packages"):
            continue
        words = fields[2].split()
        suite = words[1].split("/")[0] if len(words) >= 2 else ""
        result.append(Candidate(fields[0], fields[1], suite))
    return result


def madison(*packages: str, arch: str = HOST_ARCH) -> List[Candidate]:
    """Return every version of ``packages`` offered by the private configuration of *arch*."""
    update(arch=arch)
    return parse_madison(_run(["apt-cache", *options(arch), "madison", *packages]))


def version_in(package: str, suite: str, arch: str = HOST_ARCH) -> Optional[str]:
    """Return the version of ``package`` in ``suite``, or None if the suite lacks it."""
    for c in madison(package, arch=arch):
        if c.package == package and c.suite == suite:
            return c.version
    return None


def parse_stanzas(text: str) -> List[Dict[str, str]]:
    """Parse deb822 stanzas (``apt-cache show`` output) into dicts; continuation lines are joined."""
    stanzas: List[Dict[str, str]] = []
    current: Dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key is not None:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def show(spec: str, arch: str = HOST_ARCH) -> List[Dict[str, str]]:
    """
    Return the records of ``apt-cache show spec`` (``spec`` is ``name`` or
    ``name=version``), or an empty list if apt knows no such package.
    """
    update(arch=arch)
    try:
        return parse_stanzas(_run(["apt-cache", *options(arch), "show", spec]))
    except LabError:
        return []


def parse_depends(field: str) -> List[str]:
    """
    Return the package names of a Depends field, keeping only the first
    alternative of each ``a | b`` group and dropping version constraints.
    """
    names = []
    for group in field.split(","):
        first = group.split("|")[0].strip()
        if first:
            names.append(first.split()[0].split(":")[0])
    return names


def depends(spec: str, arch: str = HOST_ARCH) -> List[str]:
    """Return the dependencies (first alternatives) of ``spec`` (``name`` or ``name=version``)."""
    records = show(spec, arch)
    if not records:
        raise LabError(f"apt knows no package {spec}")
    return parse_depends(records[0].get("Depends", ""))


def _base_name(spec: str) -> str:
    """``name=version`` or ``name/suite`` -> ``name``."""
    for sep in ("=", "/"):
        spec = spec.split(sep, 1)[0]
    return spec


def _total_size(packages: Sequence[str], arch: str) -> Optional[int]:
    total = 0
    for spec in packages:
        records = show(spec, arch)
        if not records or not records[0].get("Size", "").isdigit():
            return None
        total += int(records[0]["Size"])
    return total


def _dir_bytes(dest: Path, before: set) -> int:
    return sum(p.stat().st_size for p in dest.iterdir() if p.name not in before and p.is_file())


def download(packages: List[str], dest: Path, arch: str = HOST_ARCH) -> List[Path]:
    """
    Download ``packages`` (``name``, ``name=version`` or ``name/suite``) of
    Debian architecture *arch* into ``dest`` with ``apt-get download`` and
    return the .deb paths, in order. A progress bar on stderr follows the
    bytes written.
    """
    if not packages:
        return []
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    total = _total_size(packages, arch)
    before = {p.name for p in dest.iterdir()}
    argv = ["apt-get", *options(arch), "download", *packages]
    env = dict(os.environ, LC_ALL="C", LANG="C")
    columns = (
        TextColumn("[bold]download[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with tempfile.TemporaryFile("w+") as err, Progress(
        *columns, console=_console, transient=False
    ) as progress:
        label = _base_name(packages[0]) + (f" (+{len(packages) - 1})" if len(packages) > 1 else "")
        task = progress.add_task(label, total=total)
        proc = subprocess.Popen(argv, cwd=dest, env=env, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            progress.update(task, completed=_dir_bytes(dest, before))
            time.sleep(0.25)
        progress.update(task, completed=_dir_bytes(dest, before))
        err.seek(0)
        errors = err.read().strip().splitlines()
    if proc.returncode != 0:
        msg = next((line for line in errors if line.startswith("E:")), errors[-1] if errors else "")
        raise LabError(f"apt-get download {' '.join(packages)} failed: {msg}")
    return [_find_deb(dest, _base_name(p)) for p in packages]


def _find_deb(dest: Path, name: str) -> Path:
    matches = sorted(dest.glob(f"{name}_*.deb"), key=lambda p: p.stat().st_mtime)
    if not matches:
        raise LabError(f"apt-get download left no {name}_*.deb in {dest}")
    return matches[-1]
