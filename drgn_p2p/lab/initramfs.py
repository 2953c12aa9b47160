# SPDX-License-Identifier: GPL-2.0-or-later
"""
Initramfs
---------

A hand-rolled initramfs: busybox-static plus the (decompressed) modules a
kernel needs to mount the host's root over virtio-9p with a tmpfs overlay.
Its ``/init`` mounts that root and ``switch_root``\\ s into the stage-2 script
named by ``qp.stage2=`` on the kernel command line (the stage-2 script lives
on the host root, so it can change without rebuilding the initramfs).

Images are cached per kernel in ``<cache>/initramfs/``, keyed by a hash of
everything that goes into them, and built in about 0.1 s.
"""

import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from drgn_p2p.lab import LabError, cache_dir

__all__ = ("BOOT_MODULES", "build_initramfs", "module_paths", "newc_archive")

#: Modules needed before the root is mounted (some kernels build them in).
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")

_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "qp-init: insmod $m failed"; done
stage2=
for arg in $(cat /proc/cmdline); do
    case "$arg" in qp.stage2=*) stage2="${arg#qp.stage2=}" ;; esac
done
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \\
    || echo "qp-init: mounting the host root failed"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \\
    || echo "qp-init: overlay mount failed"
umount /proc /sys
umount /dev 2>/dev/null
exec switch_root /newroot /bin/bash "$stage2"
echo "qp-init: switch_root failed"
echo o > /proc/sysrq-trigger
"""


def _busybox() -> Path:
    """Return the path of a static busybox on the host."""
    for cand in _BUSYBOX_CANDIDATES:
        if os.path.exists(cand):
            return Path(cand)
    raise LabError("busybox not found: install busybox-static")


def module_paths(modules_dir: Path, kver: str, names: Iterable[str] = BOOT_MODULES) -> List[Path]:
    """
    Return the module files that load *names* and their dependencies, in load
    order, using ``modprobe --show-depends`` without the host's modprobe.d
    (whose ``install`` rules, such as ndctl's for libnvdimm, would hide a
    dependency). Built-in modules are left out.

    :param modules_dir: The kernel's module directory (with modules.dep).
    """
    modprobe = shutil.which("modprobe") or "/usr/sbin/modprobe"
    out: List[Path] = []
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-mods-") as root:
        # modprobe -d wants <root>/lib/modules/<kver>; modules_dir may be anywhere.
        (Path(root) / "lib" / "modules").mkdir(parents=True)
        (Path(root) / "lib" / "modules" / kver).symlink_to(Path(modules_dir).resolve())
        for name in names:
            proc = subprocess.run(
                [modprobe, "-C", "/dev/null", "-d", root, "-S", kver, "--show-depends", name],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise LabError(f"modprobe --show-depends {name} failed: {proc.stderr.strip()}")
            for line in proc.stdout.splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] == "insmod":
                    path = Path(words[1]).resolve()
                    if path not in out:
                        out.append(path)
    return out


def _decompressed(path: Path) -> bytes:
    """Return the contents of a module file, decompressed (.ko, .ko.xz, .ko.zst, .ko.gz)."""
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".gz":
        import gzip

        return gzip.decompress(path.read_bytes())
    if path.suffix == ".zst":
        proc = subprocess.run(["zstd", "-dc", str(path)], capture_output=True)
        if proc.returncode != 0:
            raise LabError(f"zstd -d {path} failed")
        return proc.stdout
    return path.read_bytes()


def _ko_name(path: Path) -> str:
    """Module file name without its compression suffix."""
    name = path.name
    for suffix in (".xz", ".zst", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def newc_archive(entries: Sequence[Tuple[str, int, bytes]]) -> bytes:
    """
    Return a cpio archive in "newc" format.

    :param entries: ``(name, mode, data)``; a directory has mode ``0o040755``
        and empty data, a symlink ``0o120777`` and its target as data.
    """
    out = bytearray()
    for ino, (name, mode, data) in enumerate(list(entries) + [("TRAILER!!!", 0, b"")], 1):
        nlink = 2 if mode & 0o040000 else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields)
        out += name.encode() + b"\0"
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _entries(busybox: Path, modules: Sequence[Path]) -> List[Tuple[str, int, bytes]]:
    """The archive's contents: directories, busybox, /init and the modules."""
    entries: List[Tuple[str, int, bytes]] = [
        (d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "modules")
    ]
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    entries.append(("bin/sh", 0o120777, b"busybox"))
    entries.append(("init", 0o100755, _INIT.encode()))
    names = [_ko_name(m) for m in modules]
    entries.append(("modules.order", 0o100644, "".join(n + "\n" for n in names).encode()))
    for name, path in zip(names, modules):
        entries.append((f"modules/{name}", 0o100644, _decompressed(path)))
    return entries


def build_initramfs(modules_dir: Optional[Path], kver: str) -> Path:
    """
    Return the path of a cached initramfs for kernel *kver* whose modules are
    in *modules_dir* (None: everything needed is built in), building it if
    needed.
    """
    busybox = _busybox()
    modules = module_paths(modules_dir, kver) if modules_dir else []
    key = hashlib.sha256()
    key.update(_INIT.encode())
    for p in [busybox, *modules]:
        st = p.stat()
        key.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    dest = cache_dir() / "initramfs" / f"{kver}-{key.hexdigest()[:16]}.cpio"
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(newc_archive(_entries(busybox, modules)))
    os.replace(tmp, dest)
    return dest
