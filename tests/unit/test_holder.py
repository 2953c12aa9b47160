# SPDX-License-Identifier: GPL-2.0-or-later
"""The lab's holder (``guest/holder.c``) on the host, with the kernel's
answers changed by strace's fault injection: a kernel without THP fails
``madvise(MADV_NOHUGEPAGE)`` with EINVAL, and the control scenarios must
still hold their mappings; any other failure is still a failure."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

import pytest

from drgn_p2p.lab import LabError
from drgn_p2p.lab.scenarios import holder_binary

MADV_NOHUGEPAGE = 15


@pytest.fixture(scope="module")
def holder() -> Path:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    try:
        return holder_binary()
    except LabError as e:
        pytest.skip(str(e))


def _hold(holder: Path, out: Path, mode: str, inject: str) -> Sequence:
    """Run ``holder OUT MODE MODE MODE`` with *inject* failing its madvise calls;
    return (held?, stderr)."""
    argv = ["strace", "-qq", "-f", "-o", "/dev/null", "-e", "trace=madvise", "-e", f"inject=madvise:{inject}",
            str(holder), str(out), mode, "expect", mode]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    try:
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return out.exists(), (proc.stderr.read().decode() if proc.poll() is not None else "")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("mode", ["anon", "zero", "protnone"])
def test_no_thp_is_not_an_error(holder: Path, tmp_path: Path, mode: str) -> None:
    held, err = _hold(holder, tmp_path / "out.txt", mode, "error=EINVAL")
    assert held, err
    kind, pid, addr, length, expect = (tmp_path / "out.txt").read_text().split()
    assert (kind, expect) == (mode, "expect") and int(length) == 64 * 1024


def test_other_madvise_failures_still_fail(holder: Path, tmp_path: Path) -> None:
    held, err = _hold(holder, tmp_path / "out.txt", "anon", "error=ENOMEM")
    assert not held and f"madvise({MADV_NOHUGEPAGE})" in err
