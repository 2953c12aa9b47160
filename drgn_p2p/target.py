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

import os
import stat
import struct
from pathlib import Path
from typing import Optional, Sequence

import drgn
from drgn.helpers.linux.kallsyms import load_module_kallsyms

from .elf import elf_build_id, has_debug_info
from .errors import TargetError

__all__ = ("open_program",)

#: Size of the smallest file that can hold an ELF header; anything shorter is not a core.
_ELF_HEADER_SIZE = 64


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
    :param architecture: ``x86_64`` for dumps that lack it (QEMU kdump-zlib).
    :raises TargetError: on any failure, with a one-line explanation.
    """
    platform = None
    if architecture:
        try:
            platform = drgn.Platform(drgn.Architecture[architecture.upper()])
        except KeyError:
            raise TargetError(f"unknown architecture {architecture!r}") from None
    prog = drgn.Program(platform=platform)
    if core is not None:
        _attach_core(prog, core)
    elif qemu is not None:
        _attach_qemu(prog, qemu)
    else:
        _attach_kcore(prog)
    _load_debug_info(prog, symbols, debug_directories)
    # vm_ops of modules (ext4_dax_vm_ops, vfio_pci_mmap_ops, ...) are named
    # from the target's own kallsyms, so module debug info is not needed.
    try:
        prog.register_symbol_finder(
            "module_kallsyms", load_module_kallsyms(prog), enable_index=-1
        )
    except (drgn.FaultError, LookupError, ValueError):
        pass
    return prog


def _attach_kcore(prog: drgn.Program) -> None:
    if not os.path.exists("/proc/kcore"):
        raise TargetError("/proc/kcore does not exist (kernel built without CONFIG_PROC_KCORE?)")
    if os.geteuid() != 0:
        raise TargetError("reading the live kernel through /proc/kcore requires root")
    try:
        prog.set_kernel()
    except (OSError, ValueError) as e:
        raise TargetError(f"cannot open /proc/kcore: {e}") from None


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
        prog.set_core_dump(path)
    except (OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "ARCH_NAME" in msg:
            msg += " (a QEMU kdump file: pass --architecture x86_64)"
        raise TargetError(f"cannot open vmcore {path}: {msg}") from None


def _attach_qemu(prog: drgn.Program, path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise TargetError(f"cannot open QMP socket {path}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise TargetError(f"{path} is not a unix socket")
    try:
        prog.set_qemu_qmp(path)
    except (OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TargetError(
            f"cannot attach to QEMU over {path}: {msg} "
            "(is the socket free, and does the guest have -device vmcoreinfo and qemu_fw_cfg loaded?)"
        ) from None


def _load_debug_info(
    prog: drgn.Program, symbols: Sequence[str], debug_directories: Sequence[str]
) -> None:
    for path in symbols:
        if not os.path.exists(path):
            raise TargetError(f"debug info file {path} does not exist")
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
        raise TargetError(f"cannot load debug info: {e}") from None
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
