# SPDX-License-Identifier: GPL-2.0-or-later
"""
drgn-p2p inside a real drgn session: ``drgn -c VMCORE -s VMLINUX`` runs under
a pseudo-terminal (interactive mode, as a user has it) against a vmcore of the
newest lab guest holding its mappings, and the ``%p2p …`` commands are typed
at its prompt. drgn finds them through the ``drgn.plugins`` entry point.
Every output must match what the ``drgn-p2p`` command line writes for the
same vmcore; errors must leave the session running.
"""

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

pytestmark = pytest.mark.lab

PROMPT = b">>> "


class DrgnSession:
    """``drgn ARGS`` under a pty; :meth:`type` sends a line and waits for the next prompt."""

    def __init__(self, argv: List[str], env: Dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: drgn itself
            os.execvpe(argv[0], argv, env)
        self.transcript = b""
        # drgn's banner may show prompts of its own (">>> import drgn", …):
        # sync on the output of a line of our own, which its echo does not contain.
        os.write(self.fd, b"print('drgn-p2p-' + 'ready')\r")
        self.read_until(b"drgn-p2p-ready\r\n" + PROMPT, timeout=300)

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        start = len(self.transcript)
        deadline = time.monotonic() + timeout
        while marker not in self.transcript[start:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"drgn gave no {marker!r} in {timeout} s; transcript:\n"
                                     + self.transcript.decode(errors="replace")[-3000:])
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: drgn exited
                    chunk = b""
                if not chunk:
                    raise AssertionError("drgn exited; transcript:\n" + self.transcript.decode(errors="replace")[-3000:])
                self.transcript += chunk
        return self.transcript[start:]

    def type(self, line: str, timeout: float = 600) -> str:
        """Type *line* and return what drgn printed before its next prompt."""
        os.write(self.fd, line.encode() + b"\r")
        out = self.read_until(PROMPT, timeout).decode(errors="replace").replace("\r\n", "\n")
        return out[: out.rindex(PROMPT.decode())]

    def close(self) -> int:
        try:
            os.write(self.fd, b"exit()\r")
        except OSError:
            pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:
                if select.select([self.fd], [], [], 0.5)[0]:
                    os.read(self.fd, 65536)
            except OSError:
                pass
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError("drgn did not exit after exit()")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


#: The same terminal width for both faces' text reports.
ENV = {**os.environ, "COLUMNS": "160", "TERM": "dumb"}


@pytest.fixture(scope="module")
def vmcore(lab_guest, tmp_path_factory):
    guest = lab_guest("newest")
    core = guest.dump(tmp_path_factory.mktemp("drgn-session") / "vmcore.kdump", fmt="kdump-zlib")
    yield guest, core
    core.unlink(missing_ok=True)


def cli(core: Path, vmlinux: str, *args: str) -> Tuple[int, str, str]:
    argv = [_bin("drgn-p2p"), *args, "-c", str(core), "--architecture", "x86_64", "-s", vmlinux]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600, env=ENV)
    return proc.returncode, proc.stdout, proc.stderr


def _untimed(text: str) -> str:
    """*text* without the audit's run time (``in 1.23s``, ``"seconds": 1.234``, ``time="…"``)."""
    text = re.sub(r"in \d+\.\d+s", "in Ts", text)
    text = re.sub(r'"seconds": [0-9.]+', '"seconds": 0', text)
    return re.sub(r'time="[0-9.]+"', 'time="T"', text)


def _first_difference(a, b, path: str = "") -> str:
    """Where JSON values *a* and *b* first differ, and how."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {a!r} != {b!r}"[:2000]


def _fsdax(guest) -> Dict:
    found = [m for m in guest.mappings if m["kind"] == "fsdax"]
    assert found, f"the fsdax scenario is not held: {guest.skipped.get('fsdax')}"  # every lab kernel holds it
    return found[0]


def test_drgn_session_commands(vmcore, tmp_path) -> None:
    guest, core = vmcore
    vmlinux = str(guest.kernel.vmlinux)
    m = _fsdax(guest)
    pid, addr = str(m["pid"]), hex(int(m["addr"]))
    # (drgn command, drgn-p2p command line, file the drgn command writes)
    cases = [
        ("audit --json", ["audit", "--json"], "audit.json"),
        ("audit --runs --json --pid " + pid, ["audit", "--runs", "--json", "--pid", pid], "runs.json"),
        ("audit --format ktap --fail-on warning", ["audit", "--format", "ktap", "--fail-on", "warning"], "audit.ktap"),
        ("audit --format junit", ["audit", "--format", "junit"], "audit.xml"),
        ("audit", ["audit"], "audit.txt"),
        (f"explain {pid} {addr} --json", ["explain", pid, addr, "--json"], "explain.json"),
        (f"explain {pid} {addr}", ["explain", pid, addr], "explain.txt"),
        (f"maps {pid} --json", ["maps", pid, "--json"], "maps.json"),
        (f"maps {pid}", ["maps", pid], "maps.txt"),
        ("pgmaps --json", ["pgmaps", "--json"], "pgmaps.json"),
        ("rules --json", ["rules", "--json"], "rules.json"),
        ("layout --json", ["layout", "--json"], "layout.json"),
        ("layout", ["layout"], "layout.txt"),
    ]
    session = DrgnSession([_bin("drgn"), "-c", str(core), "--architecture", "x86_64", "-s", vmlinux], ENV)
    try:
        typed = {}
        for command, _, name in cases:
            out = session.type(f"%p2p {command} > {tmp_path / name}")
            status = session.type("print('status', _)")
            said = re.search(r"status (\d+)", status)
            assert said, f"%p2p {command}: no status; transcript {session.transcript.decode(errors='replace')[-3000:]}"
            typed[name] = (out, int(said.group(1)))
        # -o works inside drgn too, and a pipe to a shell command.
        session.type(f"%p2p audit --format junit -o {tmp_path / 'audit-o.xml'}")
        piped = session.type("%p2p rules | grep -c dax-leaf-bits")
        # Errors: one line each, and the session goes on.
        outside = session.type(f"%p2p explain {pid} 0x1000")
        own_target = session.type("%p2p audit -k")
        unknown = session.type("%p2p lab run")
        bad_format = session.type("%p2p audit --format yaml")
        alive = session.type("print('still', 6 * 7)")
        helped = session.type("%p2p --help")
    finally:
        rc = session.close()
    assert rc == 0

    for command, argv, name in cases:
        code, stdout, stderr = cli(core, vmlinux, *argv)
        out, status = typed[name]
        assert status == code, (command, status, code, stderr)
        got = (tmp_path / name).read_text()
        assert got.strip(), f"%p2p {command} wrote nothing; drgn printed {out!r}"
        if name.endswith(".json"):
            mine, theirs = json.loads(_untimed(got)), json.loads(_untimed(stdout))
            assert mine == theirs, (command, _first_difference(mine, theirs))
        else:
            assert _untimed(got) == _untimed(stdout), command
    # The audit found the held fsdax mapping's VMA through drgn as through the CLI.
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert any(v["pid"] == m["pid"] and int(v["start"], 16) <= int(m["addr"]) < int(v["end"], 16)
               and "fsdax" in v["pages"] for v in doc["vmas"])
    assert json.loads((tmp_path / "explain.json").read_text())["leaf"]["page_kind"] == "fsdax"
    assert _untimed((tmp_path / "audit-o.xml").read_text()) == _untimed((tmp_path / "audit.xml").read_text())
    assert piped.strip().splitlines()[-1] == "1"
    assert "not in any VMA" in outside and outside.count("error:") == 1
    assert "session's program is the target" in own_target
    assert "No such command 'lab'" in unknown
    assert "unknown format 'yaml'" in bad_format
    assert "still 42" in alive
    for name in ("audit", "explain", "maps", "pgmaps", "rules", "layout"):
        assert re.search(rf"^\s+{name}\b", helped, re.M), helped


DOC = Path(__file__).resolve().parents[2] / "docs" / "library.md"


def doc_examples(text: str) -> List[str]:
    """The ```python blocks of docs/library.md, but those marked ``<!-- not run``."""
    blocks = []
    for match in re.finditer(r"(<!-- not run[^\n]*\n)?```python\n(.*?)```", text, re.S):
        if not match.group(1):
            blocks.append(match.group(2))
    return blocks


def test_library_doc(vmcore, capsys) -> None:
    """Every example of docs/library.md runs, in order, on the vmcore, and prints what it says."""
    from drgn_p2p.target import open_program

    guest, core = vmcore
    m = _fsdax(guest)
    blocks = doc_examples(DOC.read_text())
    assert len(blocks) >= 10
    prog = open_program(core=str(core), symbols=[str(guest.kernel.vmlinux)], architecture="x86_64")
    namespace = {"prog": prog}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    result = namespace["result"]
    held = [r.vma for r in result.vmas if r.vma.pid == m["pid"] and r.vma.start <= int(m["addr"]) < r.vma.end]
    assert len(held) == 1
    # The device-mapping example lists the held fsdax VMA, with its page kind.
    line = next(x for x in out.splitlines() if x.startswith(f"{m['pid']} ") and hex(held[0].start) in x)
    assert "'fsdax'" in line and "ext4_dax_vm_ops" in line
    assert "KTAP version 1" in out.splitlines()
    assert f"{result.stats.processes} processes, {result.stats.vmas} VMAs, {len(result.findings)} findings" in out
    assert any(x.startswith("FS_DAX ") and " fsdax " in x for x in out.splitlines())
    # The audit compared with itself changes nothing; a baseline naming every finding leaves none counted.
    assert f"0 kinds changed, {len(namespace['same'].unchanged)} unchanged" in out
    assert namespace["same"].unchanged and "worst counted finding: None" in out
