# SPDX-License-Identifier: GPL-2.0-or-later
"""
A Python root for the live audit of a foreign guest
---------------------------------------------------

An arm64 guest boots from a busybox initramfs (:mod:`.guestroot`), which has
no Python. Its live audit (``drgn-p2p audit -k``, reading ``/proc/kcore``)
runs in a second root: Debian sid's ``python3`` with ``python3-drgn``,
``python3-click`` and ``python3-rich`` for the guest's architecture and every
package they depend on (``Pre-Depends`` and ``Depends``, first alternative
that apt knows), downloaded with the lab's private apt configuration and
unpacked with ``dpkg-deb -x``. Nothing of the guest's architecture runs on
the host: python3 needs none of the maintainer scripts. PyPI has no aarch64
wheel of drgn, Debian builds it for every architecture (and for the root's
Python).

The root is cached in ``<cache>/roots/ARCH/python-KEY/``, KEY a hash of the
packages asked for, the suite, the packages left out and :data:`FORMAT`;
``manifest.txt`` in it names the versions that went in. The guest gets it
read-only over 9p (``pyroot``), with the kernel's directory (``kernel``, for
the vmlinux the audit is given with ``-s``), the host's ``drgn_p2p`` package
(``p2p``, never copied into the cache) and a writable byte-code cache
(``pycache``, ``PYTHONPYCACHEPREFIX``: Debian's packages ship no ``.pyc``,
their postinst compiles them, so the first audit compiles and later ones
reuse it). :func:`prepare` mounts them in the guest under :data:`GUEST_ROOT`
with ``/proc``, ``/sys``, ``/dev``, a ``/tmp`` and the results share at ``/tmp/out``; :func:`audit_argv` is the
``chroot`` command line of the audit.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import drgn_p2p
from drgn_p2p.lab import LabError, apt, cache_dir

__all__ = ("PACKAGES", "SUITE", "GUEST_ROOT", "closure", "build_pyroot", "qemu_args", "prepare", "audit_argv")

#: What the root is made for: Python, drgn, and the project's dependencies (pyproject.toml).
PACKAGES = ("python3", "python3-drgn", "python3-click", "python3-rich")
#: The suite they come from (the arm64 lab's kernels are sid's).
SUITE = "sid"
#: Dependencies that only maintainer scripts, locales or time zones need.
LEFT_OUT = ("debconf", "libc-gconv-modules-extra", "tzdata")
#: Bumped when the layout of a root changes (a new key, a new root).
FORMAT = 1
#: Where the guest mounts the root, and where its shares appear inside it.
GUEST_ROOT = "/pyroot"
_KERNEL, _P2P, _PYCACHE = "/kernel", "/p2p", "/pycache"
#: Where the guest's results share (``/out``) appears in the root, on its tmpfs ``/tmp``.
_OUT = "/tmp/out"
#: Mount points made in the root: the pseudo file systems and the shares.
_MOUNT_POINTS = ("proc", "sys", "dev", "tmp", _KERNEL[1:], f"{_P2P[1:]}/drgn_p2p", _PYCACHE[1:])
#: 9p mount options in the guest (those of the x86-64 guests' host root).
_9P = "trans=virtio,version=9p2000.L,msize=512000"


def _roots_dir(arch: str) -> Path:
    return cache_dir() / "roots" / arch


def _key(arch: str) -> str:
    text = "\0".join([arch, SUITE, *PACKAGES, "-", *LEFT_OUT, str(FORMAT)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def closure(packages: Sequence[str], arch: str, suite: str = SUITE) -> Dict[str, str]:
    """*packages* of *suite* and everything they depend on, package name → version.

    Each ``a | b`` group is satisfied by its first alternative that apt
    knows (virtual packages have no record); :data:`LEFT_OUT` are dropped.

    :param packages: package names.
    :param arch: the Debian architecture, e.g. ``arm64``.
    :raises LabError: if a package asked for is unknown.
    """
    found: Dict[str, str] = {}
    todo = list(packages)
    while todo:
        name = todo.pop()
        if name in found or name in LEFT_OUT:
            continue
        records = apt.show(f"{name}/{suite}", arch)
        if not records:
            raise LabError(f"{suite} offers no {name} for {arch}")
        record = records[0]
        found[name] = record["Version"]
        for field in ("Pre-Depends", "Depends"):
            for group in record.get(field, "").split(","):
                alternatives = [apt.parse_depends(a)[0] for a in group.split("|") if a.strip()]
                known = next((a for a in alternatives
                              if a in found or a in LEFT_OUT or apt.show(f"{a}/{suite}", arch)), None)
                if alternatives and known is None:
                    raise LabError(f"{name} depends on {group.strip()}, which {suite} does not offer for {arch}")
                if known is not None:
                    todo.append(known)
    return found


def _usr_merge(root: Path) -> None:
    """Make ``bin``, ``sbin`` and ``lib`` links into ``usr/`` (the dynamic loader's path is ``/lib/…``)."""
    for name in ("bin", "sbin", "lib"):
        top, usr = root / name, root / "usr" / name
        usr.mkdir(parents=True, exist_ok=True)
        if top.is_dir() and not top.is_symlink():
            for entry in top.iterdir():
                if not (usr / entry.name).exists():
                    entry.rename(usr / entry.name)
            shutil.rmtree(top)
        if not top.is_symlink():
            top.symlink_to(f"usr/{name}")


def root_path(arch: str) -> Path:
    """Where the Python root for Debian *arch* is cached (:func:`build_pyroot` builds it)."""
    return _roots_dir(arch) / f"python-{_key(arch)}"


def build_pyroot(arch: str) -> Path:
    """The cached Python root for Debian *arch*, built on first use (a download of about 18 MB),
    and its byte-code cache's directory.

    :param arch: the Debian architecture, e.g. ``arm64``.
    :returns: the root's directory.
    :raises LabError: when apt cannot find or fetch a package, or one does not unpack.
    """
    _pycache(arch).mkdir(parents=True, exist_ok=True)
    dest = root_path(arch)
    if (dest / "manifest.txt").is_file():
        return dest
    versions = closure(PACKAGES, arch)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-pyroot-", dir=dest.parent) as tmp:
        debs = apt.download([f"{n}={v}" for n, v in sorted(versions.items())], Path(tmp) / "debs", arch=arch)
        root = Path(tmp) / "root"
        for deb in debs:
            proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise LabError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()[-300:]}")
        _usr_merge(root)
        python = root / "usr" / "bin" / "python3"
        if not os.path.lexists(python):
            raise LabError(f"the {arch} Python root has no /usr/bin/python3")
        for rel in _MOUNT_POINTS:
            (root / rel).mkdir(parents=True, exist_ok=True)
        (root / "manifest.txt").write_text("".join(f"{n}={v}\n" for n, v in sorted(versions.items())))
        try:
            root.rename(dest)
        except OSError:
            if not (dest / "manifest.txt").is_file():  # not another process that built it first
                raise
    return dest


def _pycache(arch: str) -> Path:
    return _roots_dir(arch) / f"pycache-{_key(arch)}"


def _vmlinux(kernel: Any) -> Path:
    return Path(kernel.vmlinux).resolve()


def qemu_args(kernel: Any) -> List[str]:
    """QEMU's 9p shares of the live audit for a *kernel* guest of another architecture:
    the Python root (:func:`build_pyroot` must have built it), the kernel's directory
    (for a kernel with a ``vmlinux``), the host's ``drgn_p2p`` package and the byte-code cache.

    :param kernel: a ``kernels.Kernel`` (``arch``, ``vmlinux``).
    """
    shares: List[Tuple[str, Path, bool]] = [("pyroot", root_path(kernel.arch), True)]
    if getattr(kernel, "vmlinux", None):
        shares.append(("kernel", _vmlinux(kernel).parent, True))
    shares += [("p2p", Path(drgn_p2p.__file__).resolve().parent, True), ("pycache", _pycache(kernel.arch), False)]
    args: List[str] = []
    for tag, path, ro in shares:
        if "," in str(path):
            raise LabError(f"QEMU cannot share a path with a comma: {path}")
        args += ["-fsdev", f"local,id={tag},path={path},security_model=none" + (",readonly=on" if ro else ""),
                 "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]
    return args


def _mount_script() -> str:
    """The guest's shell commands that mount the root and its shares (once per boot)."""
    r = GUEST_ROOT
    lines = [
        "set -e",
        f"grep -q \" {r} \" /proc/mounts && exit 0",
        f"mkdir -p {r}",
        f"mount -t 9p -o {_9P},ro,cache=loose pyroot {r}",
        f"mount -t proc proc {r}/proc",
        f"mount -t sysfs sysfs {r}/sys",
        f"mount -o bind /dev {r}/dev",
        f"mount -t tmpfs tmpfs {r}/tmp",
        f"mkdir {r}{_OUT}",
        f"mount -o bind /out {r}{_OUT}",
        f"mount -t 9p -o {_9P},ro,cache=loose kernel {r}{_KERNEL}",
        f"mount -t 9p -o {_9P},ro p2p {r}{_P2P}/drgn_p2p",
        f"mount -t 9p -o {_9P} pycache {r}{_PYCACHE}",
    ]
    return "\n".join(lines)


def prepare(guest: Any, timeout: float = 120.0) -> None:
    """Mount the Python root and its shares in *guest* (a ``vm.Guest``), unless they are.

    :raises LabError: when a mount fails (the message ends with the guest's output).
    """
    code, out = guest.run(_mount_script(), timeout=timeout)
    if code != 0:
        raise LabError(f"mounting the Python root in the guest failed (status {code}): {out.strip()[-500:]}")


def _guest_files(guest: Any, args: Sequence[str]) -> List[str]:
    """*args* with a ``--baseline`` file of the host copied to the out share and named by its
    path in the root (the x86-64 guests' root is the host's; this one is not)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--baseline" and i + 1 < len(out):
            i, path, prefix = i + 1, out[i + 1], ""
        elif arg.startswith("--baseline="):
            path, prefix = arg.partition("=")[2], "--baseline="
        else:
            continue
        if Path(path).is_file():
            name = f"baseline-{i}{Path(path).suffix}"
            shutil.copyfile(path, Path(guest.out_dir) / name)
            out[i] = f"{prefix}{_OUT}/{name}"
    return out


def audit_argv(guest: Any, args: Sequence[str]) -> List[str]:
    """The guest's command line of ``drgn-p2p audit -k ARGS`` in the Python root, after :func:`prepare`.

    A ``--baseline`` file among *args* is copied to the guest's out share.

    :param guest: a ``vm.Guest`` of a foreign kernel booted with :func:`qemu_args`.
    :param args: the audit's own arguments.
    """
    prepare(guest)
    args = _guest_files(guest, args)
    env = [f"PYTHONPATH={_P2P}", f"PYTHONPYCACHEPREFIX={_PYCACHE}", "HOME=/tmp", "LC_ALL=C.UTF-8",
           "PATH=/usr/bin:/usr/sbin"]
    vmlinux = f"{_KERNEL}/{_vmlinux(guest.kernel).name}"
    return ["env", "-i", *env, "chroot", GUEST_ROOT, "/usr/bin/python3", "-m", "drgn_p2p", "audit",
            "-s", vmlinux, "-k", *args]
