# SPDX-License-Identifier: GPL-2.0-or-later
"""
Kdump in the lab
----------------

A real ``/proc/vmcore``, taken the way a production system takes it: the lab
guest boots with ``crashkernel=``, loads its own kernel as the crash kernel
with kexec-tools (the host's ``/sbin/kexec``, seen through the shared root),
then panics (``sysrq-c``) while its scenarios' mappings are held. The crash
kernel boots the lab's own initramfs (:mod:`drgn_p2p.lab.initramfs`), whose
stage 2 is ``guest/kdump.sh`` instead of ``guest/init.sh``; it saves
``/proc/vmcore`` to the ``out`` share, as is and filtered by makedumpfile,
and powers off::

    guest = start(kernel, scenarios=[...], extra_cmdline=CRASHKERNEL_CMDLINE)
    load_crash_kernel(guest)
    dumps = crash_and_capture(guest, dest_dir, filters=(31,))
    dumps.elf        # /proc/vmcore copied whole (ELF)
    dumps.filtered   # {31: makedumpfile -d 31 output (kdump-compressed)}

makedumpfile must know the kernel: bookworm's 1.7.2 cannot filter 6.12 and
later dumps. :func:`ensure_makedumpfile` therefore unpacks a newer Debian
makedumpfile (sid's by default) together with the shared libraries it needs,
glibc included, into the lab cache, and runs it through that glibc's own
dynamic loader, so it works on the host and in any guest without a chroot.
"""

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from drgn_p2p.lab import LabError, apt, cache_dir
from drgn_p2p.lab.initramfs import build_initramfs
from drgn_p2p.lab.scenarios import GUEST_DIR

__all__ = (
    "CRASHKERNEL",
    "CRASHKERNEL_CMDLINE",
    "KdumpDumps",
    "Makedumpfile",
    "capture_cmdline",
    "crash_and_capture",
    "ensure_makedumpfile",
    "kexec_binary",
    "load_crash_kernel",
)

#: Memory reserved for the crash kernel (enough for Debian 6.1 … 7.x kernels,
#: the lab initramfs, bash and makedumpfile in cyclic mode).
CRASHKERNEL = "256M"
#: Command line words the first kernel needs for kdump.
CRASHKERNEL_CMDLINE = (f"crashkernel={CRASHKERNEL}",)

#: The crash kernel's stage 2 (on the host root, like ``init.sh``).
CAPTURE_SCRIPT = GUEST_DIR / "kdump.sh"

#: Packages of the makedumpfile bundle left out of the dependency closure:
#: makedumpfile's helper scripts need perl; the binary does not.
_BUNDLE_SKIP = frozenset({"perl", "perl-base", "debconf", "libc-gconv-modules-extra"})
_BUNDLE_MARKER = ".drgn-p2p-complete"
_LOADERS = ("usr/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2",
            "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
_LIBDIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
_BINARIES = ("usr/bin/makedumpfile", "usr/sbin/makedumpfile", "sbin/makedumpfile", "bin/makedumpfile")


# ---------------------------------------------------------------- makedumpfile


@dataclass(frozen=True)
class Makedumpfile:
    """A makedumpfile unpacked with its own glibc (see :func:`ensure_makedumpfile`)."""

    #: The Debian version, e.g. ``1:1.7.8-1``.
    version: str
    #: The directory the packages were unpacked into.
    root: Path

    def argv(self) -> List[str]:
        """The command that runs this makedumpfile (append its arguments)."""
        loader = next((self.root / p for p in _LOADERS if (self.root / p).exists()), None)
        if loader is None:
            raise LabError(f"no ld-linux-x86-64.so.2 in {self.root}")
        libs = ":".join(str(self.root / d) for d in _LIBDIRS if (self.root / d).is_dir())
        binary = next((self.root / p for p in _BINARIES if (self.root / p).exists()), None)
        if binary is None:
            raise LabError(f"no makedumpfile binary in {self.root}")
        return [str(loader), "--library-path", libs, str(binary)]

    def run(self, args: Sequence[str], timeout: float = 600) -> "subprocess.CompletedProcess[str]":
        """Run it on the host with *args*; stdout and stderr are combined."""
        return subprocess.run([*self.argv(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)


def _closure(package: str, suite: str) -> List[str]:
    """``name=version`` of *package* in *suite* and of everything it depends on (first alternatives)."""
    seen: Dict[str, str] = {}
    todo = [package]
    while todo:
        name = todo.pop()
        if name in seen or name in _BUNDLE_SKIP:
            continue
        version = apt.version_in(name, suite)
        if version is None:
            if name == package:
                raise LabError(f"Debian {suite} has no {package}")
            continue  # a virtual package; its provider is pulled in by name elsewhere
        seen[name] = version
        todo.extend(apt.depends(f"{name}={version}"))
        for record in apt.show(f"{name}={version}")[:1]:
            todo.extend(apt.parse_depends(record.get("Pre-Depends", "")))
    return [f"{name}={version}" for name, version in sorted(seen.items())]


def ensure_makedumpfile(suite: str = "sid") -> Makedumpfile:
    """
    Return the makedumpfile of Debian *suite* (``trixie``: 1.7.6, ``sid``:
    newest), downloading it and its shared libraries (about 5 MB) into
    ``cache_dir()/tools/makedumpfile-<suite>-<version>/`` unless cached.
    Needs neither root nor a chroot.
    """
    version = apt.version_in("makedumpfile", suite)
    if version is None:
        raise LabError(f"Debian {suite} has no makedumpfile")
    root = cache_dir() / "tools" / f"makedumpfile-{suite}-{version.replace(':', '_')}"
    tool = Makedumpfile(version, root)
    if (root / _BUNDLE_MARKER).exists():
        return tool
    staging = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory(prefix="drgn-p2p-debs-") as tmp:
            for deb in apt.download(_closure("makedumpfile", suite), Path(tmp)):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
        proc = Makedumpfile(version, staging).run(["-v"], timeout=60)
        if "makedumpfile: version" not in proc.stdout:
            raise LabError(f"the unpacked makedumpfile does not run: {proc.stdout.strip()[-300:]}")
        (staging / _BUNDLE_MARKER).write_text(version + "\n")
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tool


# ---------------------------------------------------------------- kexec and capture


def kexec_binary() -> Path:
    """The host's kexec (kexec-tools), which the guest runs through the shared root."""
    found = shutil.which("kexec") or next(
        (p for p in ("/usr/sbin/kexec", "/sbin/kexec") if os.path.exists(p)), None)
    if found is None:
        raise LabError("kexec not found: install kexec-tools")
    return Path(found).resolve()


def capture_cmdline(extra: Sequence[str] = ()) -> List[str]:
    """The crash kernel's command line: one CPU, devices reset, stage 2 = ``kdump.sh``."""
    return ["console=ttyS0", "loglevel=4", "panic=-1", "reset_devices", "irqpoll", "nr_cpus=1",
            "maxcpus=1", "udev.children-max=1", "cgroup_disable=memory", "mce=off", "numa=off",
            f"qp.stage2={CAPTURE_SCRIPT}", *extra]


def load_crash_kernel(guest: Any, makedumpfile: Optional[Makedumpfile] = None,
                      filters: Sequence[int] = (31,), extra_cmdline: Sequence[str] = ()) -> str:
    """
    Load *guest*'s own kernel as its crash kernel (``kexec -p``; the file
    based ``kexec_file_load`` first, the older ``kexec_load`` if that is
    refused) with the lab initramfs, and write ``/out/kdump.env``, which
    tells ``kdump.sh`` what to save. Return kexec's output.

    :param guest: A :class:`~drgn_p2p.lab.vm.Guest` booted with
        :data:`CRASHKERNEL_CMDLINE` on its command line.
    :param makedumpfile: The makedumpfile the crash kernel runs for
        *filters* (default: :func:`ensure_makedumpfile`). Must be on a path
        the guest sees (the lab cache is).
    :param filters: makedumpfile dump levels (``-d N``) to save besides the
        whole ``/proc/vmcore``; each is written kdump-compressed (pages
        stored uncompressed) as ``vmcore.d<N>``.
    :raises LabError: if the kernel reserved no crash memory or kexec fails.
    """
    kernel = guest.kernel
    from drgn_p2p.lab.vm import _modules_dir  # the same module directory the boot used

    initrd = build_initramfs(_modules_dir(kernel), kernel.kver)
    if filters and makedumpfile is None:
        makedumpfile = ensure_makedumpfile()
    env = [
        f"QP_FILTERS={shlex.quote(' '.join(str(int(f)) for f in filters))}",
        f"QP_MAKEDUMPFILE={shlex.quote(shlex.join(makedumpfile.argv()) if makedumpfile else '')}",
    ]
    (guest.out_dir / "kdump.env").write_text("\n".join(env) + "\n")
    rc, out = guest.run("cat /sys/kernel/kexec_crash_size", timeout=30)
    if rc != 0 or not out.strip().isdigit() or int(out) == 0:
        raise LabError(f"the guest reserved no crash kernel memory (crashkernel= on its command line?): {out.strip()}")
    kexec = shlex.quote(str(kexec_binary()))
    args = (f"{shlex.quote(str(kernel.vmlinuz))} --initrd={shlex.quote(str(initrd))} "
            f"--append={shlex.quote(' '.join(capture_cmdline(extra_cmdline)))}")
    rc, out = guest.run(f"{kexec} -s -p {args} || {{ echo '(kexec_file_load refused; trying kexec_load)'; "
                        f"{kexec} -p {args}; }}; echo loaded=$(cat /sys/kernel/kexec_crash_loaded)", timeout=120)
    if rc != 0 or "loaded=1" not in out:
        raise LabError(f"kexec -p failed in the guest: {out.strip()[-500:]}")
    return out


@dataclass
class KdumpDumps:
    """What the crash kernel saved, moved to the host (see :func:`crash_and_capture`)."""

    #: ``/proc/vmcore`` as the crash kernel saw it (ELF, unfiltered).
    elf: Optional[Path]
    #: makedumpfile ``-d N`` output by dump level N (kdump-compressed).
    filtered: Dict[int, Path] = field(default_factory=dict)
    #: The crash kernel's ``kdump.log`` (every step, with its status).
    log: str = ""
    #: Seconds: ``crash`` (sysrq-c until the crash kernel's stage 2),
    #: ``copy`` (the ELF copy), ``d<N>`` (each makedumpfile run), ``total``.
    timings: Dict[str, float] = field(default_factory=dict)


def crash_and_capture(guest: Any, dest: "os.PathLike[str] | str", timeout: float = 900.0) -> KdumpDumps:
    """
    Panic *guest* (``sysrq-c``; the crash kernel must be loaded by
    :func:`load_crash_kernel`), wait until the crash kernel has saved its
    dumps and powered off, and move them into the directory *dest*. The
    guest is dead afterwards (close it).

    :raises LabError: if QEMU does not exit in *timeout* seconds, or the
        crash kernel saved nothing (the log and console tail say why).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    kdir = guest.out_dir / "kdump"
    t0 = time.monotonic()
    # The command returns before the panic, so the agent's status file is written.
    rc, out = guest.run("(sleep 1; echo c > /proc/sysrq-trigger) >/dev/null 2>&1 &", timeout=30)
    if rc != 0:
        raise LabError(f"could not start the crash: {out.strip()}")
    try:
        guest.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        guest.kill()
        raise guest._diagnose(f"the crash kernel did not finish in {timeout:.0f} s") from None
    total = time.monotonic() - t0
    log = (kdir / "kdump.log").read_text(errors="replace") if (kdir / "kdump.log").exists() else ""
    if not (kdir / "done").exists():
        raise guest._diagnose(f"the crash kernel saved no dump (QEMU exited with {guest.proc.returncode}); "
                              f"kdump.log:\n{log[-1500:]}")
    timings = {"total": total}
    for line in (kdir / "timings").read_text().splitlines():
        name, _, seconds = line.partition(" ")
        timings[name] = float(seconds)
    dumps = KdumpDumps(None, {}, log, timings)
    if (kdir / "vmcore.elf").exists():
        dumps.elf = Path(shutil.move(str(kdir / "vmcore.elf"), dest / "vmcore.elf"))
    for path in sorted(kdir.glob("vmcore.d*")):
        if path.name[len("vmcore.d"):].isdigit():
            dumps.filtered[int(path.name[len("vmcore.d"):])] = Path(shutil.move(str(path), dest / path.name))
    return dumps
