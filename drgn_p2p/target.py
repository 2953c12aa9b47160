# SPDX-License-Identifier: GPL-2.0-or-later
"""
Target
------

Open a :class:`drgn.Program` on a live kernel (``/proc/kcore``), a vmcore, or
a QEMU guest over QMP, and load debug info for it — refusing, with a one-line
:class:`~drgn_p2p.errors.TargetError`, to go on without it. A vmlinux whose
build ID is not the target's is an error that says so; drgn alone would only
log "did not match any loaded modules" and continue without symbols.
"""

import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import List, Optional, Sequence

import drgn
from drgn.helpers.linux.kallsyms import load_module_kallsyms

from .elf import elf_architecture, elf_build_id, has_debug_info
from .errors import TargetError
from .flattened import cut_short, is_flattened

__all__ = ("open_program", "add_module_kallsyms")

#: Size of the smallest file that can hold an ELF header; anything shorter is not a core.
_ELF_HEADER_SIZE = 64
#: Signature of a kdump-compressed file (``struct disk_dump_header``).
_KDUMP_MAGIC = b"KDUMP   "
#: Seconds to wait for QEMU's QMP greeting before calling the socket busy
#: (``$DRGN_P2P_QMP_TIMEOUT`` overrides it).
QMP_GREETING_TIMEOUT = 5.0
QMP_TIMEOUT_ENV = "DRGN_P2P_QMP_TIMEOUT"

_log = logging.getLogger("drgn_p2p")


def open_program(
    *,
    core: Optional[str] = None,
    qemu: Optional[str] = None,
    symbols: Sequence[str] = (),
    debug_directories: Sequence[str] = (),
    architecture: Optional[str] = None,
) -> drgn.Program:
    """Open the target and load its debug info.

    With neither *core* nor *qemu*, the running kernel is opened through
    ``/proc/kcore`` (root only).

    :param core: path of an ELF or kdump-compressed vmcore.
    :param qemu: path of a QEMU QMP unix socket (``-qmp unix:PATH,server=on``
        and ``-device vmcoreinfo``; the guest must have ``qemu_fw_cfg``).
    :param symbols: vmlinux (and module) files to load; the first must match
        the target's kernel.
    :param debug_directories: directories to search for debug info when
        *symbols* does not name the vmlinux.
    :param architecture: ``x86_64`` for dumps that lack it (QEMU kdump-zlib);
        without it, such a dump takes the architecture from the ELF header
        of the first of *symbols*, with a warning.
    :raises TargetError: on any failure, with a one-line explanation.
    """
    platform = _platform(architecture) if architecture else None
    if core is None and qemu is None:
        _check_kcore()  # not root: say so before anything else
    _check_symbol_files(symbols)
    prog = drgn.Program(platform=platform)
    unreadable_hint = ""
    if core is not None:
        try:
            _attach_core(prog, core)
        except _NoArchitecture as e:
            # QEMU's kdump files do not record the architecture; the vmlinux does.
            arch = elf_architecture(Path(symbols[0])) if symbols else None
            if arch is None:
                raise TargetError(str(e) + (
                    f" (a QEMU kdump file: {symbols[0]} names no architecture either; pass --architecture "
                    "x86_64 or aarch64)" if symbols else
                    " (a QEMU kdump file: pass -s VMLINUX, or --architecture x86_64 or aarch64)")) from None
            _log.warning("vmcore %s does not record its architecture: %s taken from %s", core, arch, symbols[0])
            prog = drgn.Program(platform=_platform(arch))
            _attach_core(prog, core)
            if arch != "x86_64":
                unreadable_hint = (" (libkdumpfile cannot translate the kernel addresses of QEMU's kdump files "
                                   "of arm64 guests: dump the guest in ELF format, dump-guest-memory without "
                                   "a format)")
        what = f"vmcore {core} has no vmcoreinfo (is it a Linux kernel dump?)"
    elif qemu is not None:
        _attach_qemu(prog, qemu)
        what = (
            f"the QEMU guest behind {qemu} exposes no vmcoreinfo "
            "(start QEMU with -device vmcoreinfo and load qemu_fw_cfg in the guest)"
        )
    else:
        _attach_kcore(prog)
        what = "/proc/kcore has no vmcoreinfo"
    if not prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL:
        raise TargetError(what)
    with _held_warnings() as held:
        _load_debug_info(prog, symbols, debug_directories)
        if core is not None:
            _check_readable(prog, core, unreadable_hint)
        held.release()
    add_module_kallsyms(prog)
    return prog


class _held_warnings:
    """Hold drgn's log records while the target is loaded: :meth:`release`
    passes them on; an error that ends the load drops them, so that it is
    the one line the user sees (drgn warns first that it cannot read the
    module list of a dump whose memory it cannot read at all)."""

    def __enter__(self) -> "_held_warnings":
        self._logger = logging.getLogger("drgn")
        self._records: List[logging.LogRecord] = []
        self._logger.addFilter(self._hold)
        return self

    def _hold(self, record: logging.LogRecord) -> bool:
        self._records.append(record)
        return False

    def release(self) -> None:
        self._logger.removeFilter(self._hold)
        for record in self._records:
            self._logger.handle(record)
        self._records.clear()

    def __exit__(self, *exc: object) -> None:
        self._logger.removeFilter(self._hold)


def _check_readable(prog: drgn.Program, core: str, hint: str) -> None:
    """Fail with one line when the dump *core*'s kernel memory cannot be read
    (``init_uts_ns``, which every kernel has, is the probe): a dump cut short
    before it, or one whose addresses libkdumpfile cannot translate."""
    try:
        prog["init_uts_ns"].name.release.string_()
    except drgn.FaultError as e:
        raise TargetError(f"cannot read the target's memory: {_first_line(e)}{hint}") from None
    except LookupError:
        pass


def add_module_kallsyms(prog: drgn.Program) -> None:
    """Name module symbols from the target's own kallsyms, once per program.

    vm_ops of modules (ext4_dax_vm_ops, vfio_pci_mmap_ops, ...) are then named
    without module debug info; the finder comes last, after any debug info.
    A target whose module list cannot be read keeps the symbols it has.
    """
    if "module_kallsyms" in prog.registered_symbol_finders():
        return
    try:
        prog.register_symbol_finder(
            "module_kallsyms", load_module_kallsyms(prog), enable_index=-1
        )
    except (drgn.FaultError, LookupError, ValueError):
        pass


class _NoArchitecture(TargetError):
    """The vmcore does not record its architecture (QEMU's kdump files)."""


def _platform(architecture: str) -> drgn.Platform:
    try:
        return drgn.Platform(drgn.Architecture[architecture.upper()])
    except KeyError:
        raise TargetError(f"unknown architecture {architecture!r}") from None


def _check_kcore() -> None:
    if not os.path.exists("/proc/kcore"):
        raise TargetError("/proc/kcore does not exist (kernel built without CONFIG_PROC_KCORE?)")
    if os.geteuid() != 0:
        raise TargetError("reading the live kernel through /proc/kcore requires root")


def _attach_kcore(prog: drgn.Program) -> None:
    _check_kcore()
    try:
        prog.set_kernel()
    except Exception as e:  # noqa: BLE001  (OSError, ValueError, or drgn's bare Exception)
        raise TargetError(f"cannot open /proc/kcore: {_first_line(e)}") from None


def _attach_core(prog: drgn.Program, path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise TargetError(f"cannot open vmcore {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TargetError(f"vmcore {path} is not a regular file")
    if st.st_size < _ELF_HEADER_SIZE:
        raise TargetError(f"vmcore {path} is empty or truncated ({st.st_size} bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(_ELF_HEADER_SIZE)
    except OSError as e:
        raise TargetError(f"cannot read vmcore {path}: {e.strerror}") from None
    expected = None
    if head.startswith(b"\x7fELF"):
        expected = _elf_core_size(path)
    elif head.startswith(_KDUMP_MAGIC):
        expected = _kdump_size(path)
    short = expected is not None and st.st_size < expected
    try:
        prog.set_core_dump(path)
    # libkdumpfile's failures reach Python as a bare Exception.
    except Exception as e:  # noqa: BLE001
        msg = _first_line(e)
        if "ARCH_NAME" in msg:
            raise _NoArchitecture(f"cannot open vmcore {path}: {msg}") from None
        if "vmcoreinfo.raw is not set" in msg:
            msg += " (a dump without vmcoreinfo: QEMU needs -device vmcoreinfo and qemu_fw_cfg loaded in the guest)"
        elif "vmcoreinfo" in msg:
            pass  # drgn's message already says what the dump lacks
        elif is_flattened(head):
            with open(path, "rb") as f:
                cut = cut_short(f)
            if cut:
                raise TargetError(f"cannot open vmcore {path}: a makedumpfile flattened file cut short: {cut}") from None
            msg += " (a makedumpfile flattened file that is corrupt)"
        elif short:
            msg += f" (the file is cut short: {st.st_size} of {expected} bytes)"
        elif (head.startswith(_KDUMP_MAGIC) or head.startswith(b"\x7fELF")) and "not an ELF core" not in msg:
            msg += " (corrupt?)"
        raise TargetError(f"cannot open vmcore {path}: {msg}") from None
    if short:
        _log.warning(
            "vmcore %s is truncated: %d of %d bytes (%.0f%%); memory past its end cannot be read",
            path, st.st_size, expected, 100.0 * st.st_size / expected,
        )


def _elf_core_size(path: str) -> Optional[int]:
    """The size a 64-bit little-endian ELF core must have to hold all of its segments."""
    try:
        with open(path, "rb") as f:
            ehdr = f.read(64)
            if ehdr[4] != 2 or ehdr[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", ehdr, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", ehdr, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except (OSError, struct.error, IndexError):
        return None
    end = 0
    for i in range(min(phnum, len(table) // max(phentsize, 1))):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        if p_type in (1, 4):  # PT_LOAD, PT_NOTE
            end = max(end, p_offset + p_filesz)
    return end or None


def _kdump_size(path: str) -> Optional[int]:
    """The size a kdump-compressed file must have: the end of its last page's data.

    Layout (makedumpfile's ``diskdump_mod.h``): the header block, the
    sub-header blocks, the two bitmaps (the second marks the pages dumped),
    then one 24-byte ``struct page_desc {offset, size, flags, page_flags}``
    per dumped page, whose data makedumpfile writes in order.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(440)
            block_size, sub_hdr_size, bitmap_blocks = struct.unpack_from("<iiI", header, 428)
            if block_size <= 0 or sub_hdr_size < 0 or not bitmap_blocks:
                return None
            half = bitmap_blocks * block_size // 2
            f.seek((1 + sub_hdr_size) * block_size + half)
            dumped = bin(int.from_bytes(f.read(half), "little")).count("1")
            descs = (1 + sub_hdr_size + bitmap_blocks) * block_size
            if not dumped:
                return descs
            f.seek(descs + (dumped - 1) * 24)
            last = f.read(24)
            if len(last) < 24:
                return descs + dumped * 24
            offset, size = struct.unpack_from("<qI", last)
    except (OSError, struct.error):
        return None
    return max(descs + dumped * 24, offset + size)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _qmp_greets(path: str, timeout: float) -> Optional[str]:
    """Connect to QMP socket *path* and wait for QEMU's greeting.

    QEMU serves one client per QMP socket and leaves any other connection
    waiting, greeting-less, in the listen queue, where drgn would wait
    forever. Returns None when greeted, else why not.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        data = sock.recv(4096)
    except socket.timeout:
        return "busy"
    except OSError as e:
        return e.strerror or str(e)
    finally:
        sock.close()
    if not data:
        return "closed without a greeting"
    if b'"QMP"' not in data:
        return "not a QMP socket"
    return None


def _attach_qemu(prog: drgn.Program, path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise TargetError(f"cannot open QMP socket {path}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise TargetError(f"{path} is not a unix socket")
    try:
        timeout = float(os.environ.get(QMP_TIMEOUT_ENV) or QMP_GREETING_TIMEOUT)
    except ValueError:
        raise TargetError(f"${QMP_TIMEOUT_ENV} must be a number of seconds") from None
    problem = _qmp_greets(path, timeout)
    if problem == "busy":
        raise TargetError(
            f"QMP socket {path} is busy: QEMU gave no greeting in {timeout:g} s "
            "(it serves one client per socket; is drgn or another tool attached?)"
        )
    if problem is not None:
        raise TargetError(f"cannot attach to QEMU over {path}: {problem}")
    try:
        prog.set_qemu_qmp(path)
    except Exception as e:  # noqa: BLE001  (drgn raises a bare Exception for some failures)
        msg = _first_line(e)
        if "vmcoreinfo" in msg.lower():
            raise TargetError(
                f"cannot attach to QEMU over {path}: {msg} (start QEMU with -device vmcoreinfo "
                "and load qemu_fw_cfg in the guest)"
            ) from None
        raise TargetError(
            f"cannot attach to QEMU over {path}: {msg} "
            "(is the socket free, and does the guest have -device vmcoreinfo and qemu_fw_cfg loaded?)"
        ) from None


def _check_symbol_files(symbols: Sequence[str]) -> None:
    """Refuse debug info files that cannot be read, before the target is touched."""
    for path in symbols:
        if os.path.islink(path) and not os.path.exists(path):
            raise TargetError(
                f"debug info file {path} is a symlink to {os.readlink(path)}, which does not exist "
                "(Debian 7.x -dbg packages link boot/vmlinux-KVER to lib/modules/KVER/vmlinux: "
                "extract that file too)"
            )
        if not os.path.exists(path):
            raise TargetError(f"debug info file {path} does not exist")
        if not os.path.isfile(path):
            raise TargetError(f"debug info file {path} is not a regular file")
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise TargetError(f"cannot read debug info file {path}: {e.strerror}") from None


def _load_debug_info(
    prog: drgn.Program, symbols: Sequence[str], debug_directories: Sequence[str]
) -> None:
    if debug_directories:
        prog.debug_info_options.directories = tuple(debug_directories) + tuple(
            prog.debug_info_options.directories
        )
    try:
        main = prog.main_module()
    except LookupError:
        main = None
    try:
        prog.load_debug_info(list(symbols), main=True)
    except drgn.MissingDebugInfoError:
        pass
    except (OSError, ValueError) as e:
        raise TargetError(f"cannot load debug info: {_first_line(e)}") from None
    if main is None:
        try:
            main = prog.main_module()
        except LookupError:
            raise TargetError("the target has no kernel main module (is it a Linux kernel?)") from None
    if main.wants_debug_file():
        raise TargetError(_no_debug_info_message(main, symbols))


def _no_debug_info_message(main: drgn.Module, symbols: Sequence[str]) -> str:
    target_id = main.build_id.hex() if main.build_id else None
    for path in symbols:
        try:
            file_id = elf_build_id(Path(path))
        except (OSError, ValueError, struct.error, IndexError):
            return f"{path} is not an ELF file"
        if target_id and file_id and file_id != target_id:
            return (
                f"{path} does not match the target kernel "
                f"(build ID {file_id[:16]}… vs target {target_id[:16]}…)"
            )
        if not has_debug_info(Path(path)):
            return f"{path} has no debug info (stripped, or a -dbg symlink without its target?)"
    if symbols:
        return f"none of {', '.join(symbols)} provides debug info for the target kernel"
    return (
        "no debug info found for the target kernel"
        + (f" (build ID {target_id})" if target_id else "")
        + ": pass its vmlinux with -s"
    )
