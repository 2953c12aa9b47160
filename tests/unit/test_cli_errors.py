# SPDX-License-Identifier: GPL-2.0-or-later
"""Bad inputs through the real command line (``python -m drgn_p2p``), on the
host, without a kernel: each must end with exit code 2 and exactly one line
on stderr, ``error: …`` saying what is wrong, and no traceback. The cases
that need a real kernel (truncated vmcores, a vmlinux of another kernel,
/proc/kcore as root and as nobody, a busy QMP socket of a real QEMU) are in
tests/lab/test_reliability.py.

The commands run concurrently (each is a Python start-up), against fake QMP
servers run by the test: one that never accepts (as QEMU does with a second
client), one that hangs up, one that speaks something else."""

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
          # only so that the interpreter and packages can be read wherever they
          # are installed (e.g. under a 0700 /root); the user is not root
          "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]


class Case(NamedTuple):
    argv: List[str]
    error: str  # regular expression the error line must match (after "error: ")
    prefix: Optional[List[str]] = None  # e.g. run as nobody


class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str


def _serve(sock: socket.socket, behaviour: str, stop: threading.Event) -> None:
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except socket.timeout:
            continue
        with conn:
            if behaviour == "garbage":
                conn.sendall(b"220 smtp.example.com ESMTP\r\n")
                stop.wait(2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Files and fake QMP servers the cases point at. Socket paths must be short."""
    d = tmp_path_factory.mktemp("cli-errors")
    (d / "empty").touch()
    (d / "tiny").write_bytes(b"\x7fELF\x02\x01\x01")
    (d / "text").write_text("not a vmcore\n" * 400)
    exe = Path(shutil.which("true") or sys.executable).resolve()
    (d / "program").write_bytes(exe.read_bytes())
    (d / "elf-header").write_bytes(exe.read_bytes()[:64])
    (d / "flattened-header").write_bytes(b"makedumpfile".ljust(4096, b"\0"))
    (d / "kdump-header").write_bytes(b"KDUMP   ".ljust(8192, b"\0"))
    (d / "a dir").mkdir()
    (d / "[").mkdir()
    (d / "vmlinux-dbg").symlink_to(d / "lib/modules/7.2.13+deb14-amd64/vmlinux")
    (d / "vmlinux-text").write_text("not an ELF file\n")
    stop = threading.Event()
    sockets, threads = [], []
    for name, behaviour in (("busy.sock", None), ("hangup.sock", "hangup"), ("garbage.sock", "garbage")):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(d / name))
        sock.listen(8)
        sockets.append(sock)
        if behaviour is not None:  # busy.sock listens and never accepts: a second client of QMP
            threads.append(threading.Thread(target=_serve, args=(sock, behaviour, stop), daemon=True))
            threads[-1].start()
    yield d
    stop.set()
    for t in threads:
        t.join()
    for sock in sockets:
        sock.close()


def cases(d: Path) -> Dict[str, Case]:
    kcore = "requires root" if os.path.exists("/proc/kcore") else r"/proc/kcore does not exist"
    return {
        "no-kcore-or-root": Case(["audit", "-k"], r"/proc/kcore (does not exist|requires root)"),
        "default-source-is-kcore": Case(["audit"], r"/proc/kcore (does not exist|requires root)"),
        "not-root": Case(["audit", "-k"], kcore, prefix=NOBODY),
        "not-root-maps": Case(["maps", "-k", "1"], kcore, prefix=NOBODY),
        "vmcore-missing": Case(["audit", "-c", str(d / "nope")], r"cannot open vmcore .*/nope: No such file or directory"),
        "vmcore-empty": Case(["audit", "-c", str(d / "empty")], r"vmcore .*/empty is empty or truncated \(0 bytes\)"),
        "vmcore-tiny": Case(["audit", "-c", str(d / "tiny")], r"vmcore .*/tiny is empty or truncated \(7 bytes\)"),
        "vmcore-directory": Case(["audit", "-c", str(d / "a dir")], r"vmcore .*/a dir is not a regular file"),
        "vmcore-text": Case(["audit", "-c", str(d / "text")], r"cannot open vmcore .*/text: not an ELF core file$"),
        "vmcore-program": Case(["audit", "-c", str(d / "program")], r"cannot open vmcore .*/program: not an ELF core file$"),
        "vmcore-elf-header-only": Case(["audit", "-c", str(d / "elf-header")], r"cannot open vmcore .*/elf-header: .*"),
        "vmcore-flattened-header-only": Case(
            ["audit", "-c", str(d / "flattened-header"), "--architecture", "x86_64"],
            r"cannot open vmcore .*/flattened-header: a makedumpfile flattened file cut short: "
            r"it ends at byte \d+, before its end marker$",
        ),
        "vmcore-kdump-header-only": Case(
            ["audit", "-c", str(d / "kdump-header"), "--architecture", "x86_64"],
            r"cannot open vmcore .*/kdump-header: .*\(corrupt\?\)$",
        ),
        "vmcore-markup-in-path": Case(["audit", "-c", f"{d}/[/x]"], r"cannot open vmcore .*/\[/x\]: No such file"),
        "vmlinux-missing": Case(["audit", "-c", str(d / "text"), "-s", str(d / "no-vmlinux")],
                                r"debug info file .*/no-vmlinux does not exist"),
        "vmlinux-dbg-symlink-trap": Case(
            ["audit", "-c", str(d / "text"), "-s", str(d / "vmlinux-dbg")],
            r"debug info file .*/vmlinux-dbg is a symlink to .*/lib/modules/7\.2\.13\+deb14-amd64/vmlinux, "
            r"which does not exist \(Debian 7\.x -dbg packages",
        ),
        "vmlinux-directory": Case(["audit", "-c", str(d / "text"), "-s", str(d / "a dir")],
                                  r"debug info file .*/a dir is not a regular file"),
        "qmp-missing": Case(["audit", "--qemu", str(d / "none.sock")], r"cannot open QMP socket .*/none\.sock: No such file"),
        "qmp-not-a-socket": Case(["audit", "--qemu", str(d / "text")], r".*/text is not a unix socket"),
        "qmp-busy": Case(["audit", "--qemu", str(d / "busy.sock")],
                         r"QMP socket .*/busy\.sock is busy: QEMU gave no greeting in 1 s \(it serves one client"),
        "qmp-hangs-up": Case(["audit", "--qemu", str(d / "hangup.sock")], r"cannot attach to QEMU over .*: closed without a greeting"),
        "qmp-not-qmp": Case(["audit", "--qemu", str(d / "garbage.sock")], r"cannot attach to QEMU over .*: not a QMP socket"),
        "two-sources": Case(["audit", "-k", "-c", str(d / "text")], r"give at most one of -k, -c and --qemu"),
        "unknown-rule": Case(["audit", "--rule", "no-such-rule"], r"unknown rule 'no-such-rule' \(see 'drgn-p2p rules'\)"),
        "unknown-kind": Case(["audit", "--kind", "gpu"], r"unknown page kind 'gpu' \(one of: ram, .*\)"),
        "bad-range": Case(["audit", "--range", "0x2000-0x1000"], r"--range '0x2000-0x1000' is empty"),
        "bad-address": Case(["explain", "1", "0xzz"], r"address '0xzz' is not a number"),
        "unknown-format": Case(["audit", "--format", "xml"], r"unknown format 'xml' \(one of: text, json, ktap, junit, html\)"),
        "json-and-other-format": Case(["audit", "--json", "--format", "junit"], r"--json is --format json: give one of"),
        "output-no-directory": Case(["audit", "-o", str(d / "nope" / "out.xml")], r"cannot write .*/nope/out\.xml: no directory .*/nope$"),
        "output-is-directory": Case(["audit", "-o", str(d / "a dir")], r"cannot write .*/a dir: it is a directory"),
        "output-not-writable": Case(["audit", "-o", str(d / "out.xml")], r"cannot write .*/out\.xml: permission denied", prefix=NOBODY),
        "unknown-architecture": Case(["audit", "--architecture", "vax", "-c", str(d / "text")], r"unknown architecture 'vax'"),
    }


@pytest.fixture(scope="module")
def results(workdir: Path) -> Dict[str, Result]:
    env = dict(os.environ, DRGN_P2P_QMP_TIMEOUT="1", COLUMNS="80", PYTHONPATH=str(REPO))
    env.pop("DRGN_P2P_DEBUG", None)
    procs = {}
    for name, case in cases(workdir).items():
        if case.prefix and shutil.which(case.prefix[0]) is None:
            continue
        argv = (case.prefix or []) + [sys.executable, "-m", "drgn_p2p"] + case.argv
        procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                       cwd=str(workdir), stdin=subprocess.DEVNULL)
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[name] = Result(proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
    return out


@pytest.mark.parametrize("name", sorted(cases(Path("/x"))))
def test_bad_input_is_one_error_line_and_exit_2(name: str, results: Dict[str, Result], workdir: Path) -> None:
    if name not in results:
        pytest.skip("setpriv is not installed")
    r = results[name]
    check_one_error(r.code, r.stdout, r.stderr, cases(workdir)[name].error)


def check_one_error(code: int, stdout: str, stderr: str, pattern: str) -> str:
    """Exit code 2, nothing on stdout, no traceback, and on stderr exactly one
    ``error:`` line matching *pattern*, after nothing but one-line warnings
    (drgn's, such as its note on makedumpfile's flattened format)."""
    assert "Traceback" not in stderr, stderr
    assert code == 2, (code, stderr)
    assert stdout == ""
    lines = stderr.splitlines()
    assert lines and lines[-1].startswith("error: "), stderr
    assert all(line.startswith("warning: ") for line in lines[:-1]), stderr
    assert re.search(pattern, lines[-1][len("error: "):]), (pattern, lines[-1])
    return lines[-1]


def test_the_unprivileged_case_really_ran_unprivileged(workdir: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    probe = subprocess.run(NOBODY + [sys.executable, "-c", "import os, drgn_p2p; print(os.geteuid(), os.getegid())"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=str(workdir))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["65534", "65534"]
