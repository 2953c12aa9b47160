# SPDX-License-Identifier: GPL-2.0-or-later
"""
Kernels built from a Debian source package
------------------------------------------

A lab kernel of the user's kind: the tree of Debian's ``linux-source-X.Y``
package, configured with ``make defconfig`` and ``make kvm_guest.config`` plus
a fragment (:data:`FRAGMENT`: what the lab's scenarios and its boot need, with
one scenario's option left out on purpose) and built in place, as a user
builds a kernel. ``drgn-p2p lab run --kernel-dir`` then takes the tree.

The build runs with the gcc of the suite's module build chroot (see
:mod:`drgn_p2p.lab.kmod`), in a private copy of that chroot that also has
what a kernel build needs (flex, bison, bc, libssl-dev): the shared chroot
stays free for module builds during the long ``make``, which runs under
``nice -n 19``. The tree is mounted into the copy at its own path, so the
absolute paths ``make`` records are right outside too. The result is cached
in ``cache_dir()/source-kernels/<key>/`` where the key covers the package
version, the fragment and the build recipe.
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from drgn_p2p.lab import LabError, apt, cache_dir
from drgn_p2p.lab import kmod

__all__ = ("FRAGMENT", "SERIES", "SUITE", "source_kernels_dir", "fragment_options", "source_kernel_key",
           "build_source_kernel", "build_record")

#: The config fragment of the lab guest's kernel (CONFIG_PCI_P2PDMA off).
FRAGMENT = Path(__file__).with_name("kconfig") / "lab-guest-x86_64.config"
#: The ``linux-source-X.Y`` series built, and the suite offering it.
SERIES = "7.2"
SUITE = "sid"
#: What a kernel build needs besides kmod's chroot packages and the compiler.
BUILD_PACKAGES = ("flex", "bison", "bc", "libssl-dev", "cpio", "xz-utils", "python3-minimal")
#: Bumped when the recipe changes in a way the key cannot see.
RECIPE = 1

_MARKER = ".drgn-p2p-complete"


def source_kernels_dir() -> Path:
    """Return the directory holding kernels built from source packages, one per key."""
    return cache_dir() / "source-kernels"


def fragment_options(text: str) -> Dict[str, Optional[str]]:
    """
    The options a config fragment sets: ``{"CONFIG_X": "y"}`` for
    ``CONFIG_X=y``, ``{"CONFIG_X": None}`` for ``# CONFIG_X is not set``.
    """
    options: Dict[str, Optional[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            options[name] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[2:-len(" is not set")]] = None
    return options


def source_kernel_key(version: str, fragment: str, cc: str) -> str:
    """The cache key of a kernel built from ``linux-source`` *version* with *fragment* by *cc*."""
    h = hashlib.sha256()
    for part in (str(RECIPE), version, cc, fragment):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def _build_chroot(suite: str, cc: str, timings: Dict[str, float]) -> Path:
    """
    A private copy of kmod's *suite* chroot with compiler package *cc* and
    :data:`BUILD_PACKAGES`. The shared chroot's lock is held only while it
    is copied; the copy has a lock of its own.
    """
    root = source_kernels_dir() / "chroots" / suite
    with kmod._lock(root.with_name(f"{suite}.lock")):
        marker = root / _MARKER
        if marker.is_file() and json.loads(marker.read_text()) == {"suite": suite, "cc": cc,
                                                                   "packages": list(BUILD_PACKAGES)}:
            return root
        return _copy_chroot(root, suite, cc, timings)


def _copy_chroot(root: Path, suite: str, cc: str, timings: Dict[str, float]) -> Path:
    """Make *root* anew (see :func:`_build_chroot`; its lock held)."""
    staging = root.with_name(f".{suite}.new")
    kmod._remove_tree(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        with kmod._lock(kmod.chroots_dir() / f"{suite}.lock"):
            shared = kmod._ensure_chroot_locked(suite, cc, timings)
            with kmod._step(f"copy the {suite} chroot", timings):
                kmod._run(["cp", "-a", "--one-file-system", str(shared), str(staging)])
        for name in ("resolv.conf",):
            shutil.copy2(f"/etc/{name}", staging / "etc" / name)
        log = source_kernels_dir() / f"chroot-{suite}.log"
        with kmod._step(f"install {', '.join(BUILD_PACKAGES)}", timings), kmod._proc_mounted(staging):
            # The module headers kmod unpacked with --force-depends would make apt refuse to install
            # anything here: the copy needs none of them.
            kmod._chroot(staging, ["sh", "-c", "dpkg-query -W -f='${binary:Package}\\n' 'linux-headers-*' "
                                   "'linux-kbuild-*' | xargs -r dpkg --purge --force-depends"], log=log)
            # The mirror may serve a snapshot whose Release files are past their Valid-Until.
            aptget = ["apt-get", "-o", "Acquire::Check-Valid-Until=false"]
            kmod._chroot(staging, [*aptget, "update"], log=log)
            kmod._chroot(staging, [*aptget, "install", "-y", "--no-install-recommends", *BUILD_PACKAGES], log=log)
            kmod._chroot(staging, ["apt-get", "clean"], log=log)
        (staging / _MARKER).write_text(json.dumps({"suite": suite, "cc": cc, "packages": list(BUILD_PACKAGES)}) + "\n")
        kmod._remove_tree(root)
        staging.rename(root)
    finally:
        kmod._remove_tree(staging)
    return root


def _extract_source(version: str, dest: Path, timings: Dict[str, float]) -> Path:
    """Download ``linux-source-SERIES`` *version* and extract its tree into *dest*; return the tree."""
    package = f"linux-source-{SERIES}"
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        with kmod._step(f"download {package}", timings):
            (deb,) = apt.download([f"{package}={version}"], Path(tmp))
        with kmod._step(f"extract {package}", timings):
            script = 'dpkg-deb --fsys-tarfile "$1" | tar -xO --occurrence=1 "$2" | tar -xJ -C "$3"'
            kmod._run(["sh", "-c", script, "sh", str(deb), f"./usr/src/{package}.tar.xz", str(dest)])
    tree = dest / package
    if not (tree / "Makefile").is_file():
        raise LabError(f"{package} {version} extracted no {tree.name}/Makefile")
    return tree


def _check_config(config: Path, wanted: Dict[str, Optional[str]]) -> None:
    """Raise LabError naming each fragment option kconfig did not honour (an unmet dependency)."""
    from drgn_p2p.lab.kernels import parse_config

    have = parse_config(config.read_text())
    wrong = [f"{name}={have.get(name) or 'n'} (fragment: {value or 'n'})"
             for name, value in wanted.items() if have.get(name) != value]
    if wrong:
        raise LabError(f"{config}: the fragment's options did not stick: {'; '.join(wrong)}")


def build_source_kernel(fragment: Path = FRAGMENT, jobs: int = 2, suite: str = SUITE,
                        timings: Optional[Dict[str, float]] = None) -> Path:
    """
    Build (unless cached) the kernel of ``linux-source-SERIES`` in *suite*
    configured with *fragment* and return its build tree (``bzImage``,
    ``vmlinux``, ``.config``, modules built in place). ``make -j`` *jobs*
    runs at nice 19; an interrupted make is resumed by the next call.
    *timings* receives each step's seconds; the marker file
    ``<key>/.drgn-p2p-complete`` records them.

    :param fragment: Config fragment applied after defconfig and kvm_guest.config.
    :param jobs: Parallel make jobs.
    :param suite: Debian suite whose chroot and gcc build it.
    :param timings: Filled with {step: seconds}.
    :rtype: Path
    """
    timings = {} if timings is None else timings
    package = f"linux-source-{SERIES}"
    version = apt.version_in(package, suite)
    if version is None:
        raise LabError(f"{suite} offers no {package}")
    cc = _suite_gcc(suite)
    text = Path(fragment).read_text()
    key = source_kernel_key(version, text, cc)
    out = source_kernels_dir() / key
    tree = out / package
    if (out / _MARKER).is_file():
        return tree
    kmod._need_root()
    start = time.monotonic()
    root = _build_chroot(suite, cc, timings)
    with kmod._lock(source_kernels_dir() / f"{key}.lock"):
        if (out / _MARKER).is_file():
            return tree
        # A make that was interrupted after the tree was configured goes on
        # where it stopped (Kbuild rebuilds whatever has no .cmd file yet).
        configured = out / ".configured"
        resumed = 0
        if configured.is_file() and (out / "fragment.config").read_text() == text:
            resumed = int(configured.read_text() or 0) + 1
        else:
            kmod._remove_tree(out)
            out.mkdir(parents=True)
            _extract_source(version, out, timings)
            shutil.copy2(fragment, out / "fragment.config")
        log = out / "build.log"
        make = ["nice", "-n", "19", "make", "-C", str(tree.resolve()), f"CC={cc}", f"HOSTCC={cc}"]
        # Only this build uses the private chroot (its lock), and the tree is
        # ours: nothing here touches the shared chroot kmod builds modules in.
        with kmod._lock(root.with_name(f"{root.name}.lock")), kmod._bind_mounted(root, out), kmod._proc_mounted(root):
            if not resumed:
                with kmod._step("configure", timings):
                    kmod._chroot(root, [*make, "defconfig"], log=log)
                    kmod._chroot(root, [*make, "kvm_guest.config"], log=log)
                    kmod._chroot(root, ["sh", "-c", 'cd "$1" && scripts/kconfig/merge_config.sh -m .config "$2"',
                                        "sh", str(tree.resolve()), str((out / "fragment.config").resolve())], log=log)
                    kmod._chroot(root, [*make, "olddefconfig"], log=log)
            _check_config(tree / ".config", fragment_options(text))
            configured.write_text(str(resumed))
            with kmod._step(f"make -j{jobs}", timings):
                kmod._chroot(root, [*make, f"-j{jobs}", "all"], log=log)
        for rel in ("arch/x86/boot/bzImage", "vmlinux", "Module.symvers"):
            if not (tree / rel).is_file():
                raise LabError(f"make left no {rel} in {tree} (log: {log})")
        (out / _MARKER).write_text(json.dumps({
            "package": package, "version": version, "cc": cc, "jobs": jobs, "key": key,
            # How many earlier makes were interrupted (their time is not in "seconds").
            "resumed": resumed,
            "seconds": {k: round(v, 1) for k, v in timings.items()},
            "total_seconds": round(time.monotonic() - start, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }) + "\n")
    return tree


def _suite_gcc(suite: str) -> str:
    """The newest ``gcc-N`` package *suite* offers (the compiler its kernels are built with)."""
    found: List[Tuple[int, str]] = []
    for c in apt.madison(*(f"gcc-{n}" for n in range(12, 21))):
        if c.suite == suite:
            found.append((int(c.package.split("-")[1]), c.package))
    if not found:
        raise LabError(f"{suite} offers no gcc-N package")
    return max(found)[1]


def build_record(tree: Path) -> Dict[str, object]:
    """The marker record of a built tree (:func:`build_source_kernel`'s result): version, cc, seconds."""
    return json.loads((Path(tree).parent / _MARKER).read_text())


if __name__ == "__main__":  # pragma: no cover - by hand: python -m drgn_p2p.lab.kbuild
    t: Dict[str, float] = {}
    print(build_source_kernel(jobs=int(os.environ.get("JOBS", "2")), timings=t))
    print(json.dumps(t))
