# SPDX-License-Identifier: GPL-2.0-or-later
"""drgn-p2p is read-only by construction: no module of the engine (every
module but the QEMU lab harness) may call anything that writes to a target or
a file (but the report file the user names with ``audit -o``) — drgn write paths, ``set_*`` on objects, sockets that send, files or
/proc/kcore opened for writing, /dev/mem — nor import ctypes or mmap. The
scanner reads the source's syntax tree, and is itself tested on a snippet
that does each forbidden thing."""

import ast
from pathlib import Path
from typing import List

import pytest

import drgn_p2p

PACKAGE = Path(drgn_p2p.__file__).resolve().parent
#: The lab boots test guests and writes its own run directories; it never opens a target with drgn.
HARNESS = {"lab"}

#: drgn.Program.set_*: choosing the program source is how a target is opened, read-only.
ALLOWED_SET = {"set_core_dump", "set_kernel", "set_qemu_qmp"}
FORBIDDEN_IMPORTS = {"ctypes", "mmap", "fcntl"}
FORBIDDEN_PATHS = ("/dev/mem", "/dev/kmem", "/dev/port", "/proc/sysrq-trigger", "/sys/kernel/debug")
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"}


def _mode(call: ast.Call, position: int) -> str:
    """The constant mode argument of an open()-like call ('r' when absent or not constant)."""
    if len(call.args) > position and isinstance(call.args[position], ast.Constant):
        return str(call.args[position].value)
    for kw in call.keywords:
        if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    return "r"


def _receiver(func: ast.expr) -> str:
    """``os`` for ``os.replace``; empty for anything else."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    return ""


def write_paths(source: str, name: str = "<source>") -> List[str]:
    """Every way *source* could write, as ``name:line: what``."""
    problems: List[str] = []

    def bad(node: ast.AST, what: str) -> None:
        problems.append(f"{name}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            attr = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if attr.startswith("write") or attr in ("writelines", "truncate", "poke"):
                bad(node, f"calls {attr}()")
            elif attr.startswith("set_") and attr not in ALLOWED_SET:
                bad(node, f"calls {attr}()")
            elif attr in ("send", "sendall", "sendto", "sendmsg", "sendfile"):
                bad(node, f"calls {attr}()")
            elif attr in ("unlink", "touch", "mkdir", "makedirs", "chmod", "chown", "rmtree", "rmdir"):
                bad(node, f"calls {attr}()")
            elif attr in ("remove", "rename", "replace") and _receiver(func) in ("os", "shutil"):
                bad(node, f"calls {_receiver(func)}.{attr}()")  # str.replace() is fine
            elif attr == "open":
                is_os_open = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "os"
                if is_os_open:
                    flags = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)} & _WRITE_FLAGS
                    if flags:
                        bad(node, f"os.open() with {', '.join(sorted(flags))}")
                else:
                    # open(path, mode) or Path(...).open(mode)
                    mode = _mode(node, 1 if isinstance(func, ast.Name) else 0)
                    if set(mode) & set("wax+"):
                        bad(node, f"open() for writing (mode {mode!r})")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for n in names:
                if n.split(".")[0] in FORBIDDEN_IMPORTS:
                    bad(node, f"imports {n}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for path in FORBIDDEN_PATHS:
                if path in node.value:
                    bad(node, f"names {path}")
    return problems


#: The one file the engine writes: the report the user names with ``audit -o FILE``,
#: in this function of this module and nowhere else.
REPORT_WRITER = ("cli.py", "_write")


def _report_writer_lines() -> range:
    module, function = REPORT_WRITER
    tree = ast.parse((PACKAGE / module).read_text())
    (node,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
    return range(node.lineno, node.end_lineno + 1)


def engine_modules() -> List[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in HARNESS)


def test_the_engine_has_no_write_path() -> None:
    modules = engine_modules()
    names = {p.relative_to(PACKAGE).as_posix() for p in modules}
    # the scan covers the whole pipeline, not an empty set
    assert {"target.py", "walk.py", "pipeline.py", "cli.py", "arch/x86_64.py", "classify.py", "layout.py"} <= names
    problems = [p for path in modules for p in write_paths(path.read_text(), path.relative_to(PACKAGE).as_posix())]
    writer = _report_writer_lines()
    allowed = [p for p in problems if p.startswith(REPORT_WRITER[0] + ":") and int(p.split(":")[1]) in writer]
    # The report writer opens its file for writing and writes the report, and that is all.
    assert [p.split(": ", 1)[1] for p in allowed] == ["open() for writing (mode 'w')", "calls write()"]
    assert [p for p in problems if p not in allowed] == []


def test_the_scanner_finds_every_kind_of_write() -> None:
    snippet = '''
import ctypes
from mmap import mmap
prog.write(0xffff888000000000, b"x")
prog.write_u64(0x1000, 1)
obj.set_value_(3)
prog.set_pid(1)
open("/proc/kcore", "wb")
open(path, mode="r+b")
Path("/proc/kcore").open("w")
os.open("/proc/kcore", os.O_RDWR)
sock.sendall(b'{"execute": "pmemsave"}')
Path(x).write_text("y")
os.unlink(x)
os.replace(a, b)
f = "/dev/mem"
'''
    found = write_paths(snippet)
    assert len(found) == 15, "\n".join(found)
    # and reading is fine
    assert write_paths(
        'open(p, "rb"); open(p); prog.read(0, 8, True); prog.set_core_dump(p); sock.recv(9); "a".replace("a", "b")'
    ) == []


@pytest.mark.parametrize("mode", ["w", "wb", "a", "ab", "r+", "rb+", "x"])
def test_every_write_mode_is_caught(mode: str) -> None:
    assert write_paths(f"open(p, {mode!r})") != []
