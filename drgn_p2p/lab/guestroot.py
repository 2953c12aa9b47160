# SPDX-License-Identifier: GPL-2.0-or-later
"""
Guest roots of another architecture
-----------------------------------

An x86-64 guest boots into the host's own root over 9p (:mod:`.initramfs`).
An arm64 guest cannot run the host's programs, so its whole root is an
initramfs: Debian's ``busybox-static`` and ``bash-static`` for the guest's
architecture (fetched with the lab's private apt configuration, extracted
once into ``<cache>/roots/ARCH/``), the guest scripts (``guest/init.sh``,
``guest/scenarios.sh``), the statically cross-compiled ``holder``, and the
kernel's modules the root needs (9p for the results share, ``qemu_fw_cfg``
for vmcoreinfo), decompressed, in a module tree of their own with
``modules.dep`` from ``depmod``, and the out-of-tree modules the boot's
scenarios load (test_hmm, cross-built by :mod:`.kmod`) at
:data:`GUEST_KMODS`. ``/init`` points the kernel's ``request_module()`` at
busybox's modprobe (``kernel.modprobe``: there is no ``/sbin/modprobe``;
6.12's ext4 asks for ``crypto-crc32c``, a soft dependency busybox's modprobe
does not load), loads the 9p modules and runs ``init.sh``
with bash, the same stage 2 as on x86-64.

Images are cached in ``<cache>/initramfs/``, keyed by a hash of everything
that goes into them.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from drgn_p2p.lab import LabError, apt, cache_dir
from drgn_p2p.lab.initramfs import BOOT_MODULES, _decompressed, _ko_name, module_paths, newc_archive
from drgn_p2p.lab.scenarios import GUEST_DIR

__all__ = ("ROOT_PACKAGES", "ROOT_MODULES", "GUEST_HOLDER", "GUEST_MODULES", "GUEST_KMODS", "guest_kmod",
           "root_tools", "build_guest_root")

#: Debian packages whose static binaries make the root: (package, file in it, path in the root).
ROOT_PACKAGES = (
    ("busybox-static", "usr/bin/busybox", "bin/busybox"),
    ("bash-static", "usr/bin/bash-static", "bin/bash"),
)
#: The suite they come from.
ROOT_SUITE = "sid"
#: Modules the root loads: the 9p results share, and vmcoreinfo through fw_cfg.
ROOT_MODULES = tuple(m for m in BOOT_MODULES if m != "overlay") + ("qemu_fw_cfg",)
#: Modules the root holds for the scenarios to load (pmem from the DTB, ext4 for fsdax, dax_pmem
#: and device_dax for device-dax, zram for swap and zswap, nvme for p2pdma's CMB, vfio-pci and
#: its type1 IOMMU backend, which vfio only names as a soft dependency, for vfio-huge;
#: uio_pci_generic, vgem, virtio_gpu and bochs for the zoo's uio and DRM shapes).
SCENARIO_MODULES = ("of_pmem", "nd_pmem", "dax_pmem", "device_dax", "ext4", "zram", "nvme", "vfio-pci",
                    "vfio_iommu_type1", "uio_pci_generic", "vgem", "virtio_gpu", "bochs")
#: Where the holder and the module tree live in the root (``init.sh`` reads them from config.env).
GUEST_HOLDER = "/guest/holder"
GUEST_MODULES = "/lib/lab-modules"
#: Where out-of-tree modules (test_hmm.ko) live in the root.
GUEST_KMODS = "/guest/kmods"


def guest_kmod(ko: Path) -> str:
    """The path in the root of the out-of-tree module *ko* that :func:`build_guest_root` was given."""
    return f"{GUEST_KMODS}/{Path(ko).name}"

_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
echo /bin/modprobe > /proc/sys/kernel/modprobe
for m in $(cat /modules.order); do modprobe "$m" || echo "qp-init: modprobe $m failed"; done
umount /proc
exec /bin/bash /guest/init.sh
echo "qp-init: exec /bin/bash failed"
"""


def _first_member(root: Path, rel: str, package: str) -> Path:
    """The file *rel* of an extracted *package*, following usr-merge (``bin/`` and ``usr/bin/``)."""
    for cand in (rel, rel.replace("usr/bin/", "bin/")):
        if (root / cand).is_file():
            return root / cand
    raise LabError(f"{package} holds no {rel}")


def root_tools(arch: str) -> Dict[str, Path]:
    """The static binaries of :data:`ROOT_PACKAGES` for Debian *arch*, path in the root → cached file.

    Each package is downloaded and its binary extracted once, into
    ``<cache>/roots/ARCH/PACKAGE_VERSION/``; a cached one needs no network.
    """
    out: Dict[str, Path] = {}
    for package, member, dest in ROOT_PACKAGES:
        name = Path(dest).name
        cached = sorted(_roots_dir(arch).glob(f"{package}_*/{name}"), key=lambda p: p.stat().st_mtime)
        out[dest] = cached[-1] if cached else _extract(arch, package, member, name)
    return out


def _roots_dir(arch: str) -> Path:
    return cache_dir() / "roots" / arch


def _extract(arch: str, package: str, member: str, name: str) -> Path:
    """Download *package* of *arch* from :data:`ROOT_SUITE` and keep its file *member* as *name*."""
    version = apt.version_in(package, ROOT_SUITE, arch=arch)
    if version is None:
        raise LabError(f"{ROOT_SUITE} offers no {package} for {arch}")
    target = _roots_dir(arch) / f"{package}_{version.replace(':', '%3a')}" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-root-") as tmp:
        (deb,) = apt.download([f"{package}={version}"], Path(tmp), arch=arch)
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()[-300:]}")
        found = _first_member(Path(tmp) / "x", member, package)
        partial = target.with_name(name + ".tmp")
        shutil.copyfile(found, partial)
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    return target


def _module_tree(modules_dir: Path, kver: str, modules: List[Path]) -> List[Tuple[str, int, bytes]]:
    """Archive entries of a module tree at :data:`GUEST_MODULES` holding
    *modules* (:data:`ROOT_MODULES`, :data:`SCENARIO_MODULES` and their
    dependencies), decompressed, with the ``modules.dep`` that ``depmod``
    writes for exactly them."""
    real = Path(modules_dir).resolve()
    entries: List[Tuple[str, int, bytes]] = []
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-rootmods-") as tmp:
        tree = Path(tmp) / "lib" / "modules" / kver
        for path in modules:
            rel = path.relative_to(real).parent / _ko_name(path)
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_bytes(_decompressed(path))
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (real / name).is_file():
                shutil.copyfile(real / name, tree / name)
        proc = subprocess.run(["depmod", "-b", tmp, kver], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"depmod on the arm64 root's modules failed: {proc.stderr.strip()[-300:]}")
        base = f"{GUEST_MODULES.lstrip('/')}/{kver}"
        entries.append((base, 0o040755, b""))
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree)
            entries.append((f"{base}/{rel}", 0o040755, b"") if path.is_dir()
                           else (f"{base}/{rel}", 0o100644, path.read_bytes()))
    return entries


def build_guest_root(kernel, holder: Path, kmods: Sequence[Path] = ()) -> Path:
    """The cached initramfs that is the whole root of a *kernel* guest of another architecture.

    :param kernel: a ``kernels.Kernel`` with ``arch``, ``kver`` and a module tree (``modules_dir``).
    :param holder: the holder cross-compiled for ``kernel.arch``.
    :param kmods: out-of-tree modules built for *kernel*, put at :func:`guest_kmod`.
    """
    if kernel.modules_dir is None:
        raise LabError(f"{kernel.kver} has no module tree: the {kernel.arch} root needs its 9p and fw_cfg modules")
    tools = root_tools(kernel.arch)
    scripts = {name: (GUEST_DIR / name).read_bytes() for name in ("init.sh", "scenarios.sh")}
    modules = module_paths(Path(kernel.modules_dir), kernel.kver, ROOT_MODULES + SCENARIO_MODULES)
    key = hashlib.sha256(_INIT.encode())
    for path in [*tools.values(), holder, *(GUEST_DIR / n for n in scripts), *modules, *map(Path, kmods)]:
        key.update(f"{path}\0{path.stat().st_size}\0{path.stat().st_mtime_ns}\0".encode())
    key.update(f"{Path(kernel.modules_dir).resolve()}\0{kernel.kver}".encode())
    dest = cache_dir() / "initramfs" / f"{kernel.kver}-root-{key.hexdigest()[:16]}.cpio"
    if dest.exists():
        return dest
    entries: List[Tuple[str, int, bytes]] = [
        (d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "run", "tmp", "root", "out", "lib", "lib/modules",
                                      GUEST_MODULES.lstrip("/"), "guest", GUEST_KMODS.lstrip("/"), "usr",
                                      "usr/bin", "sbin")
    ]
    for path_in_root, src in tools.items():
        entries.append((path_in_root, 0o100755, src.read_bytes()))
    entries.append(("bin/sh", 0o120777, b"busybox"))
    entries.append(("init", 0o100755, _INIT.encode()))
    for name, data in scripts.items():
        entries.append((f"guest/{name}", 0o100755, data))
    entries.append((GUEST_HOLDER.lstrip("/"), 0o100755, holder.read_bytes()))
    for ko in map(Path, kmods):
        entries.append((guest_kmod(ko).lstrip("/"), 0o100644, ko.read_bytes()))
    entries.extend(_module_tree(Path(kernel.modules_dir), kernel.kver, modules))
    # /init's modprobe reads /lib/modules/KVER: point it at the tree (init.sh links it the same way).
    entries.append((f"lib/modules/{kernel.kver}", 0o120777, f"{GUEST_MODULES}/{kernel.kver}".encode()))
    entries.append(("modules.order", 0o100644, "".join(m + "\n" for m in ROOT_MODULES).encode()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(newc_archive(entries))
    os.replace(tmp, dest)
    return dest
