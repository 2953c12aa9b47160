# SPDX-License-Identifier: GPL-2.0-or-later
"""
Guests
------

Boot a lab kernel under QEMU with the host's root file system shared
read-only over 9p (plus a tmpfs overlay), set up the requested scenarios and
hand back a :class:`Guest` that holds every mapping until it is released::

    with boot(ensure_kernel("newest")) as guest:
        prog = drgn.Program()
        prog.set_qemu_qmp(guest.qmp_path)
        ...
        rc, out = guest.run("cat /proc/meminfo")
        guest.dump("/tmp/vmcore", fmt="kdump-zlib")

Everything of one boot lives in a private run directory (mode 0700) under the
temporary directory: the two QMP sockets (``qmp.sock`` for drgn,
``qmp-ctl.sock`` for control such as ``dump-guest-memory``), ``console.log``
(diagnostics only) and the ``out/`` results share, where the guest writes
``stage2``, ``ready``, ``manifest.txt``, ``mappings.json``, ``skipped.json``,
``init.log`` and ``logs/<scenario>.log``, and runs commands dropped in
``out/cmd/``. Readiness and results are read from those files, never from the
console.

QEMU runs in its own session, is killed by its PID on timeout, on exit of the
``with`` block and at interpreter exit, and also receives SIGKILL if the
Python process dies (``PR_SET_PDEATHSIG``).
"""

import atexit
import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import sys
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from drgn_p2p.lab import LabError, pyroot
from drgn_p2p.lab.guestroot import GUEST_HOLDER, GUEST_MODULES, build_guest_root, guest_kmod
from drgn_p2p.lab.initramfs import build_initramfs
from drgn_p2p.flattened import SIGNATURE, FlattenedError, is_flattened, records
from drgn_p2p.lab.qmp import Qmp
from drgn_p2p.lab.scenarios import GUEST_DIR, Plan, holder_binary, plan

__all__ = ("BOOT_RETRIES", "DUMP_FORMATS", "EarlyDeath", "Guest", "accel_args", "boot", "explaining_lines",
           "kvm_usable", "reassemble")

#: Formats accepted by :meth:`Guest.dump` (QEMU 7.2 writes kdump in the
#: makedumpfile *flattened* format, which :meth:`Guest.dump` reassembles).
DUMP_FORMATS = ("elf", "kdump-zlib", "kdump-lzo", "kdump-snappy")

#: Set to ``tcg`` or ``kvm`` to override the accelerator choice.
ACCEL_ENV = "DRGN_P2P_LAB_ACCEL"
#: Set to a non-empty value to keep run directories for debugging.
KEEP_ENV = "DRGN_P2P_LAB_KEEP"
#: Set to the seconds a guest may take to hold its mappings (default
#: :data:`BOOT_TIMEOUT`), for a host busy with other work.
BOOT_TIMEOUT_ENV = "DRGN_P2P_LAB_BOOT_TIMEOUT"
BOOT_TIMEOUT = 180.0

_live: Set["Guest"] = set()

#: Seconds an arm64 guest (emulated by TCG on an x86-64 host) may take to hold its mappings.
FOREIGN_BOOT_TIMEOUT = 900.0

#: How many times a guest that dies before it holds its mappings (in early
#: boot, or in its stage 2 before ``ready``) is booted again.
BOOT_RETRIES = 1

#: Console lines that say why a guest died: the lab init's own errors, the
#: kernel's panic, oops and BUG lines.
_EXPLAINING = re.compile(
    r"qp-init:|qp:.*fail|Kernel panic|Attempted to kill init|\bBUG:|\bOops\b|general protection fault"
    r"|Unable to handle|Fatal exception|VFS: |No working init|switch_root:|insmod:|mount:"
)


class EarlyDeath(LabError):
    """The guest died (QEMU exited) before it held its mappings."""


def explaining_lines(lines: Sequence[str], most: int = 8) -> List[str]:
    """The first console *lines* that explain a guest's death (at most *most*)."""
    return [line for line in lines if _EXPLAINING.search(line)][:most]

#: How the guest's scenario script (``run_one``) starts the reason of a
#: scenario that failed to set up.
_FAILED = "error: "


def kvm_usable() -> bool:
    """
    Return whether KVM can run a stock kernel here: ``/dev/kvm`` is usable and
    backed by VMX or SVM. A PVM host (``/sys/module/kvm_pvm``) cannot.
    """
    if os.path.exists("/sys/module/kvm_pvm") or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "vmx" in flags or "svm" in flags


def arm64_accel_args(lpa2: bool = True) -> List[str]:
    """
    QEMU's accelerator and CPU for an arm64 guest on this (x86-64) host: TCG
    with ``-cpu max``, which has FEAT_LPA2, so a 52-bit kernel runs with
    52-bit VA (5 levels with 4K pages); ``lpa2=False`` adds ``lpa2=off``
    (48 bits, 4 levels). ``pauth-impdef=on`` only makes TCG's pointer
    authentication cheaper.
    """
    return ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max,pauth-impdef=on" + ("" if lpa2 else ",lpa2=off")]


def accel_args(la57: bool = True) -> List[str]:
    """
    Return QEMU's accelerator and CPU arguments: TCG with ``-cpu max`` (which
    has LA57, hence 5-level paging) unless KVM is usable; ``la57=False`` adds
    ``-la57`` for 4-level paging. Under KVM, 5-level paging needs a host CPU
    with LA57.
    """
    choice = os.environ.get(ACCEL_ENV) or ("kvm" if kvm_usable() else "tcg")
    suffix = "" if la57 else ",-la57"
    if choice == "kvm":
        return ["-accel", "kvm", "-cpu", "host,-arch-capabilities" + suffix]
    if choice != "tcg":
        raise LabError(f"${ACCEL_ENV} must be tcg or kvm, not {choice!r}")
    return ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max" + suffix]


def reassemble(flattened: Path, dest: Path) -> Path:
    """
    Turn makedumpfile's flattened format (what QEMU 7.2 writes for kdump-*)
    into the ordinary kdump-compressed file, as ``makedumpfile -R`` does
    (the format: :mod:`drgn_p2p.flattened`).
    """
    with open(flattened, "rb") as src, open(dest, "wb") as out:
        try:
            for record in records(src):
                out.seek(record.offset)
                size = record.size
                while size > 0:
                    chunk = src.read(min(size, 16 << 20))
                    if not chunk:
                        raise FlattenedError("ends inside a record")
                    out.write(chunk)
                    size -= len(chunk)
        except FlattenedError as e:
            raise LabError(f"{flattened} {e}") from None
    return dest


def _set_pdeathsig() -> None:
    """In the child: get SIGKILL when the parent thread dies; own session."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _reap_all() -> None:
    """atexit: kill every guest still running."""
    for guest in list(_live):
        guest.close(grace=0)


atexit.register(_reap_all)


def _exit_on_sigterm() -> None:
    """Make SIGTERM run the atexit clean-up (guests, run directories).

    Python's default action for SIGTERM skips atexit handlers; QEMU would still
    die (PDEATHSIG) but its private run directory would be left behind. Only
    installed where nobody has set a handler of their own.
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        try:
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        except ValueError:  # not the main thread
            pass


class Guest:
    """A booted guest holding its scenarios' mappings (see :func:`boot`)."""

    def __init__(self, kernel: Any, run_dir: Path, proc: "subprocess.Popen[bytes]",
                 plan_: Plan, started: float) -> None:
        self.kernel = kernel
        self.run_dir = run_dir
        self.out_dir = run_dir / "out"
        #: QMP socket reserved for drgn (``prog.set_qemu_qmp`` / ``drgn --qemu``).
        self.qmp_path = str(run_dir / "qmp.sock")
        #: QMP socket for control commands (:meth:`dump`).
        self.ctl_path = str(run_dir / "qmp-ctl.sock")
        self.proc = proc
        self.plan = plan_
        #: Recorded mappings: dicts with kind, pid, addr, len, expect.
        self.mappings: List[Dict[str, Any]] = []
        #: Scenario name → why it was not set up.
        self.skipped: Dict[str, str] = {}
        #: Wall and guest times in seconds (boot, stage2, ready, uptime_*).
        self.timings: Dict[str, float] = {}
        self._started = started
        #: Why each earlier boot of this guest died before it held its mappings (see :data:`BOOT_RETRIES`).
        self.boot_retries: List[str] = []
        self._ncmd = 0
        self._closed = False

    # -- state --------------------------------------------------------------

    @property
    def pid(self) -> int:
        """PID of the QEMU process."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether QEMU is still running."""
        return self.proc.poll() is None

    def console_log(self) -> str:
        """Return the serial console output so far (for diagnostics)."""
        try:
            return (self.run_dir / "console.log").read_text(errors="replace")
        except OSError:
            return ""

    def _diagnose(self, what: str, error: type = LabError) -> LabError:
        """A LabError for *what* with the console lines that explain it and its tail."""
        lines = self.console_log().splitlines()
        first = explaining_lines(lines)
        tail = lines[-25:]
        text = f"{what} (run dir {self.run_dir})"
        if first:
            text += ":\n" + "\n".join(first)
        if tail and tail != first[-len(tail):]:
            text += "\nconsole tail:\n" + "\n".join(tail)
        return error(text)

    def _wait_file(self, path: Path, deadline: float, what: str) -> None:
        """Wait until *path* exists, QEMU exits or *deadline* passes."""
        while not path.exists():
            if not self.alive():
                early = EarlyDeath if path.name in ("stage2", "ready") else LabError
                raise self._diagnose(f"QEMU exited with status {self.proc.returncode} before {what}", early)
            if time.monotonic() > deadline:
                raise self._diagnose(f"timed out before {what}")
            time.sleep(0.05)

    def _wait_ready(self, timeout: float) -> None:
        """Wait for out/ready, then load the results and record timings."""
        deadline = self._started + timeout
        self._wait_file(self.out_dir / "stage2", deadline, "the guest's stage 2")
        self.timings["stage2"] = time.monotonic() - self._started
        self._wait_file(self.out_dir / "ready", deadline, "the guest held its mappings")
        self.timings["ready"] = time.monotonic() - self._started
        self.timings["uptime_stage2"] = float((self.out_dir / "stage2").read_text())
        self.timings["uptime_ready"] = float((self.out_dir / "ready").read_text())
        self.mappings = json.loads((self.out_dir / "mappings.json").read_text())
        self.skipped = json.loads((self.out_dir / "skipped.json").read_text())

    @property
    def failed(self) -> Dict[str, str]:
        """Scenario name → why it failed to set up in the guest (an error, unlike
        a scenario the kernel's config rules out)."""
        return {name: reason[len(_FAILED):] for name, reason in self.skipped.items() if reason.startswith(_FAILED)}

    # -- commands -----------------------------------------------------------

    def run(self, cmd: str, timeout: float = 120.0) -> Tuple[int, str]:
        """
        Run the shell command *cmd* with bash in the guest (as root, cwd /)
        and return ``(status, combined stdout and stderr)``. Commands run one
        at a time. The guest kills the command after *timeout* seconds
        (status 124 or 137).

        :raises LabError: if the guest does not answer in time or QEMU exits.
        """
        self._ncmd += 1
        base = self.out_dir / "cmd" / f"{self._ncmd:06d}"
        base.parent.mkdir(exist_ok=True)
        base.with_suffix(".timeout").write_text(f"{max(1, int(timeout))}\n")
        tmp = base.with_suffix(".sh.tmp")
        tmp.write_text(cmd + "\n")
        os.replace(tmp, base.with_suffix(".sh"))
        rc_file = base.with_suffix(".rc")
        deadline = time.monotonic() + timeout + 30
        what = f"command {self._ncmd} ({cmd[:60]!r}) finished"
        while True:
            self._wait_file(rc_file, deadline, what)
            text = rc_file.read_text()
            if text.endswith("\n"):  # written in one write(); complete
                return int(text), base.with_suffix(".out").read_text(errors="replace")
            if time.monotonic() > deadline:
                raise self._diagnose(f"timed out reading the status of {what}")
            time.sleep(0.02)

    def qmp(self, command: str, arguments: Optional[Dict[str, Any]] = None,
            timeout: float = 60.0) -> Any:
        """Run one QMP command on the control socket and return its result."""
        with Qmp(self.ctl_path) as q:
            return q.execute(command, arguments, timeout=timeout)

    def dump(self, path: "os.PathLike[str] | str", fmt: str = "kdump-zlib",
             timeout: float = 600.0, flattened: bool = False) -> Path:
        """
        Write a vmcore of the guest to *path* with ``dump-guest-memory``
        (``paging: false``) and return its absolute path. QEMU 7.2 writes
        ``kdump-*`` files in makedumpfile's flattened format, which drgn
        opens only with a warning: they are reassembled into ordinary
        kdump-compressed files unless *flattened* is true.
        """
        if fmt not in DUMP_FORMATS:
            raise LabError(f"dump format must be one of {DUMP_FORMATS}, not {fmt!r}")
        dest = Path(path).resolve()
        raw = dest.with_name(dest.name + ".flat") if fmt.startswith("kdump") and not flattened else dest
        args = {"paging": False, "protocol": f"file:{raw}", "format": fmt}
        self.qmp("dump-guest-memory", args, timeout=timeout)
        if raw != dest:
            with open(raw, "rb") as f:
                is_flat = is_flattened(f.read(len(SIGNATURE)))
            if is_flat:
                reassemble(raw, dest)
                raw.unlink()
            else:
                raw.replace(dest)
        return dest

    # -- shutdown -----------------------------------------------------------

    def release(self, timeout: float = 30.0) -> Optional[int]:
        """
        Ask the guest to drop its mappings and power off (``out/release``);
        kill QEMU if it has not exited after *timeout* seconds. Return QEMU's
        exit status, or None if it had to be killed.
        """
        if self.alive():
            (self.out_dir / "release").touch()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return None

    def kill(self) -> None:
        """SIGKILL QEMU by its PID and reap it."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self, grace: float = 30.0) -> None:
        """Release (or kill, with ``grace=0``) and remove the run directory."""
        if self._closed:
            return
        self._closed = True
        try:
            if grace > 0:
                self.release(grace)
            else:
                self.kill()
        finally:
            _live.discard(self)
            if not os.environ.get(KEEP_ENV):
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"Guest(kver={getattr(self.kernel, 'kver', '?')!r}, pid={self.pid}, run_dir={str(self.run_dir)!r})"


# -- boot ---------------------------------------------------------------------


def _no_space(path: Path, what: str) -> str:
    """Return str(path), refusing whitespace (it goes on the kernel command line)."""
    s = str(path)
    if any(c.isspace() for c in s):
        raise LabError(f"{what} path must not contain whitespace: {s!r}")
    return s


def _modules_dir(kernel: Any) -> Optional[Path]:
    """The kernel's module directory: ``.modules_dir``, else ``.dir/lib/modules/<kver>``."""
    mdir = getattr(kernel, "modules_dir", None)
    if mdir is None:
        mdir = Path(kernel.dir) / "lib" / "modules" / kernel.kver
    mdir = Path(mdir).resolve()
    return mdir if (mdir / "modules.dep").exists() else None


def _foreign(kernel: Any) -> bool:
    """Whether *kernel* runs on another architecture than the host: its guest boots its own root."""
    return getattr(kernel, "arch", "amd64") != "amd64"


def _guest_path(kernel: Any, ko: Optional[Path]) -> str:
    """Where the guest finds the out-of-tree module *ko* ('' for none): the host's
    path on x86-64 (the root is the host's), its place in a foreign root otherwise."""
    if ko is None:
        return ""
    return guest_kmod(ko) if _foreign(kernel) else str(ko)


def _config_env(kernel: Any, plan_: Plan, holder: Path) -> str:
    """The shell-quoted /out/config.env that the guest sources."""
    names = " ".join(s.name for s in plan_.scenarios)
    moddir = f"{GUEST_MODULES}/{kernel.kver}" if _foreign(kernel) else str(_modules_dir(kernel) or "")
    lines = [
        f"QP_KVER={shlex.quote(kernel.kver)}",
        f"QP_MODDIR={shlex.quote(moddir)}",
        f"QP_HOLDER={shlex.quote(GUEST_HOLDER if _foreign(kernel) else str(holder))}",
        f"QP_TEST_HMM={shlex.quote(_guest_path(kernel, plan_.test_hmm))}",
        f"QP_TEST_HMM_ARGS={shlex.quote(' '.join(plan_.test_hmm_args()))}",
        f"QP_SCENARIOS={shlex.quote(names)}",
        "declare -A QP_EXPECT=(" + " ".join(
            f"[{shlex.quote(s.name)}]={shlex.quote(s.expect)}" for s in plan_.scenarios) + ")",
        # The physical start of each DT pmem scenario's pmem-region node (its nd region's resource).
        "declare -A QP_OF_PMEM=(" + " ".join(
            f"[{shlex.quote(name)}]={start:#x}" for name, (start, _) in plan_.of_pmem().items()) + ")",
    ]
    return "\n".join(lines) + "\n"


def _prepare_out(out: Path, kernel: Any, plan_: Plan, holder: Path) -> None:
    """Create the out share with config.env and the host-side skips."""
    out.mkdir()
    (out / "config.env").write_text(_config_env(kernel, plan_, holder))
    (out / "skipped.txt").write_text("".join(
        f"{name}\t{' '.join(reason.split())}\n" for name, reason in plan_.skipped.items()))


#: The guest's memory, all of it below the 32-bit PCI hole (q35 moves RAM
#: past 2 GiB above 4 GiB only from 2.75 GiB on, and PCI BARs must lie above
#: RAM for p2p_violate). The scenarios reserve 1 GiB of the low 2 GiB (pmem
#: for fsdax and devdax, test_hmm's coherent memory): 1.5 GiB stay RAM.
GUEST_MEMORY = "2560M"


def _mib(memory: str) -> int:
    """MiB of a QEMU ``-m`` size with a unit (``2560M``, ``1G``)."""
    value, unit = memory[:-1], memory[-1].upper()
    if not value.isdigit() or unit not in "MG":
        raise LabError(f"guest memory {memory!r}: give MiB or GiB, as 2560M or 1G")
    return int(value) << (10 if unit == "G" else 0)


def _qemu_argv(kernel: Any, initrd: Path, run_dir: Path, plan_: Plan, la57: bool,
               memory: str, smp: int, extra_cmdline: Sequence[str],
               extra_qemu_args: Sequence[str] = ()) -> List[str]:
    """The full QEMU command line for one boot."""
    if _foreign(kernel):
        return _arm64_argv(kernel, initrd, run_dir, plan_, la57, memory, smp, extra_cmdline, extra_qemu_args)
    stage2 = _no_space(GUEST_DIR / "init.sh", "guest script")
    # tsc=reliable: no clocksource watchdog. On a loaded host it finds TCG's TSC skewed and
    # switches clocksource at run time, which (7.x's inlined clocksource read) patches
    # ktime_get() with int3 under the other vCPU: "Oops: int3" at ktime_get+0x3b, seen on 7.2.
    cmdline = ["console=ttyS0", "loglevel=4", "panic=-1", "tsc=reliable", f"qp.stage2={stage2}",
               *plan_.cmdline(), *extra_cmdline]
    early, devices = plan_.qemu_args()
    qmp = lambda name: ["-qmp", f"unix:{run_dir / name},server=on,wait=off"]  # noqa: E731
    fsdev = lambda id_, path, ro: [  # noqa: E731
        "-fsdev", f"local,id={id_},path={path},security_model=none,multidevs=remap" + (",readonly=on" if ro else ""),
        "-device", f"virtio-9p-pci,fsdev={id_},mount_tag={id_}",
    ]
    return [
        shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
        "-name", "drgn-p2p-guest", *accel_args(la57), "-machine", ",".join(["q35", *plan_.machine_props()]),
        "-smp", str(smp), "-m", memory,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd), "-append", " ".join(cmdline),
        "-chardev", f"file,id=ser0,path={run_dir / 'console.log'}", "-serial", "chardev:ser0",
        *qmp("qmp.sock"), *qmp("qmp-ctl.sock"), "-device", "vmcoreinfo",
        *early,
        *fsdev("hostroot", "/", True), *fsdev("out", run_dir / "out", False),
        *devices, *extra_qemu_args,
    ]


def _arm64_argv(kernel: Any, initrd: Path, run_dir: Path, plan_: Plan, lpa2: bool,
                memory: str, smp: int, extra_cmdline: Sequence[str], extra_qemu_args: Sequence[str] = ()) -> List[str]:
    """QEMU's command line for an arm64 guest: the ``virt`` machine with GICv3
    (and the scenarios' machine properties, such as its SMMUv3) under TCG,
    its own root in *initrd* (:mod:`.guestroot`), the out share,
    the vmcoreinfo device and the scenarios' devices."""
    if kernel.arch != "arm64":
        raise LabError(f"the lab cannot boot {kernel.arch} kernels")
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        raise LabError("qemu-system-aarch64 not found: install qemu-system-arm")
    # oops=panic: an oops under TCG (seen once: perf_ctx_sched_task_cb while the guest set
    # up) ends the guest, so the boot counts as an early death and is retried, not left
    # to hang until the timeout.
    cmdline = ["console=ttyAMA0", "loglevel=4", "panic=-1", "oops=panic", *plan_.cmdline(), *extra_cmdline]
    early, devices = plan_.qemu_args()
    qmp = lambda name: ["-qmp", f"unix:{run_dir / name},server=on,wait=off"]  # noqa: E731
    machine = ["-machine", ",".join(["virt", "gic-version=3", *plan_.machine_props()]), *arm64_accel_args(lpa2),
               "-smp", str(smp), "-m", memory,
               "-nodefaults", "-no-user-config", "-display", "none"]
    if plan_.of_pmem():
        machine += ["-dtb", str(_pmem_dtb(qemu, machine, run_dir, sorted(plan_.of_pmem().values())))]
    return [
        qemu, "-name", "drgn-p2p-guest", *machine, "-no-reboot",
        "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd), "-append", " ".join(cmdline),
        "-chardev", f"file,id=ser0,path={run_dir / 'console.log'}", "-serial", "chardev:ser0",
        *qmp("qmp.sock"), *qmp("qmp-ctl.sock"), "-device", "vmcoreinfo",
        *early,
        "-fsdev", f"local,id=out,path={run_dir / 'out'},security_model=none",
        "-device", "virtio-9p-pci,fsdev=out,mount_tag=out",
        *pyroot.qemu_args(kernel),
        *devices, *extra_qemu_args,
    ]


def _pmem_dtb(qemu: str, machine: Sequence[str], run_dir: Path, ranges: Sequence[Tuple[int, int]]) -> Path:
    """QEMU virt's device tree for *machine* with a ``pmem-region`` node
    (drivers/nvdimm/of_pmem.c) for each (start, size) of *ranges*, each its own
    nd bus and region. QEMU rewrites the memory nodes of a ``-dtb`` from ``-m``:
    the scenarios keep RAM below them with ``mem=`` on the kernel command line."""
    raw, dtb = run_dir / "virt.dtb", run_dir / "virt-pmem.dtb"
    argv = list(machine)
    argv[1] += f",dumpdtb={raw}"
    proc = subprocess.run([qemu, *argv], capture_output=True, text=True, timeout=120)
    if not raw.exists():
        raise LabError(f"QEMU could not dump the virt DTB: {(proc.stderr or proc.stdout).strip()[-300:]}")
    dtc = shutil.which("dtc")
    if dtc is None:
        raise LabError("dtc not found: install device-tree-compiler")
    dts = subprocess.run([dtc, "-q", "-I", "dtb", "-O", "dts", str(raw)], capture_output=True, text=True).stdout

    def cells(value: int) -> str:
        return f"{value >> 32:#x} {value & 0xFFFF_FFFF:#x}"

    if not dts.rstrip().endswith("};"):
        raise LabError("dtc decompiled the virt DTB into something unexpected")
    nodes = "".join(f"\tpmem@{base:x} {{\n\t\tcompatible = \"pmem-region\";\n\t\treg = <{cells(base)} {cells(size)}>;\n\t}};\n"
                    for base, size in ranges)
    dts = dts.rstrip()[:-2] + nodes + "};\n"
    proc = subprocess.run([dtc, "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), "-"], input=dts,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"dtc could not compile the pmem DTB: {proc.stderr.strip()[-300:]}")
    return dtb


def _run_dir() -> Path:
    """A private (0700) run directory whose socket paths fit in sun_path."""
    run_dir = Path(tempfile.mkdtemp(prefix="drgn-p2p-lab-"))
    os.chmod(run_dir, 0o700)
    if len(str(run_dir / "qmp-ctl.sock")) >= 108:
        shutil.rmtree(run_dir)
        raise LabError(f"temporary directory path too long for a Unix socket: {run_dir}")
    return run_dir


def start(kernel: Any, scenarios: Optional[Sequence[str]] = None, la57: bool = True,
          extra_cmdline: Sequence[str] = (), timeout: Optional[float] = None,
          test_hmm: Optional["os.PathLike[str] | str"] = None,
          memory: str = GUEST_MEMORY, smp: int = 2, extra_qemu_args: Sequence[str] = ()) -> Guest:
    """
    Boot and wait until ready, like :func:`boot`, but return the
    :class:`Guest` without a ``with`` block; the caller must
    :meth:`Guest.close` it (interpreter exit kills it otherwise).
    """
    if timeout is None:
        try:
            timeout = float(os.environ.get(BOOT_TIMEOUT_ENV) or BOOT_TIMEOUT)
        except ValueError:
            raise LabError(f"${BOOT_TIMEOUT_ENV} must be a number of seconds") from None
    plan_ = plan(kernel, scenarios, test_hmm)
    memory = f"{plan_.memory_mib(_mib(memory))}M"  # more when a scenario needs it (hugetlb-1g)
    if _foreign(kernel):
        timeout = max(timeout, FOREIGN_BOOT_TIMEOUT)
    holder = holder_binary(getattr(kernel, "arch", "amd64"))
    if _foreign(kernel):
        initrd = build_guest_root(kernel, holder, [plan_.test_hmm] if plan_.test_hmm else [])
        pyroot.build_pyroot(kernel.arch)  # for the live audit (cached)
    else:
        initrd = build_initramfs(_modules_dir(kernel), kernel.kver)
    retries: List[str] = []
    while True:
        try:
            guest = _start_once(kernel, plan_, holder, initrd, la57, extra_cmdline, timeout, memory, smp,
                                extra_qemu_args)
        except EarlyDeath as e:
            # Under TCG a guest can die once in a while (a panic in
            # sched_clock_cpu in early boot, an int3 oops in schedule_idle
            # while its stage 2 sets up) and boot fine the next time; a
            # scenario that oopses the kernel every time fails the retry too.
            if len(retries) >= BOOT_RETRIES:
                raise LabError(f"{e} (booted {len(retries) + 1} times)") from None
            why = next(iter(explaining_lines(str(e).splitlines()[1:])), str(e).splitlines()[0])
            retries.append(why)
            when = "its stage 2" if "stage 2" in str(e).splitlines()[0] else "it held its mappings"
            print(f"lab: the {kernel.kver} guest died before {when} ({why.strip()}); booting it again",
                  file=sys.stderr)
            continue
        guest.boot_retries = retries
        return guest


def _start_once(kernel: Any, plan_: Plan, holder: Path, initrd: Path, la57: bool, extra_cmdline: Sequence[str],
                timeout: float, memory: str, smp: int, extra_qemu_args: Sequence[str]) -> Guest:
    """One boot of :func:`start`."""
    run_dir = _run_dir()
    try:
        _prepare_out(run_dir / "out", kernel, plan_, holder)
        argv = _qemu_argv(kernel, initrd, run_dir, plan_, la57, memory, smp, extra_cmdline, extra_qemu_args)
        (run_dir / "qemu.argv").write_text(shlex.join(argv) + "\n")
        with open(run_dir / "qemu.log", "wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    preexec_fn=_set_pdeathsig)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    guest = Guest(kernel, run_dir, proc, plan_, started)
    _live.add(guest)
    _exit_on_sigterm()
    try:
        guest._wait_ready(timeout)
    except LabError as e:
        qemu_log = (run_dir / "qemu.log").read_text(errors="replace").strip()
        guest.close(grace=0)
        if qemu_log:
            raise type(e)(f"{e}\nQEMU said: {qemu_log[-1000:]}") from None
        raise
    except BaseException:
        guest.close(grace=0)
        raise
    return guest


@contextmanager
def boot(kernel: Any, scenarios: Optional[Sequence[str]] = None, la57: bool = True,
         extra_cmdline: Sequence[str] = (), timeout: Optional[float] = None,
         test_hmm: Optional["os.PathLike[str] | str"] = None,
         memory: str = GUEST_MEMORY, smp: int = 2, extra_qemu_args: Sequence[str] = ()) -> Iterator[Guest]:
    """
    Boot *kernel* with *scenarios* held and yield the ready :class:`Guest`;
    release it (power off, kill after 30 s) on exit.

    :param kernel: A ``kernels.Kernel`` (``.kver``, ``.vmlinuz``, ``.config``,
        ``.modules_dir`` with modules.dep, else ``.dir/lib/modules/<kver>``).
    :param scenarios: Scenario names (see :data:`scenarios.SCENARIOS`); None
        means every scenario the kernel supports. Others are in
        :attr:`Guest.skipped` with the reason.
    :param la57: 5-level paging (``-cpu max``); False gives 4-level paging.
    :param extra_cmdline: More kernel command line words.
    :param extra_qemu_args: More QEMU arguments, after the scenarios' devices
        (e.g. the GUP probe's virtio-blk disk).
    :param timeout: Seconds until every mapping must be held (default
        ``$DRGN_P2P_LAB_BOOT_TIMEOUT``, else :data:`BOOT_TIMEOUT`).
    :param test_hmm: test_hmm.ko for ``device-private``
        (default ``$DRGN_P2P_TEST_HMM``).
    :raises LabError: if QEMU cannot start, exits or times out before ready.
    """
    guest = start(kernel, scenarios, la57, extra_cmdline, timeout, test_hmm, memory, smp, extra_qemu_args)
    try:
        yield guest
    finally:
        guest.close()
