# SPDX-License-Identifier: GPL-2.0-or-later
"""The CLI's last line of defence, in process: whatever the stages raise
becomes one ``error:`` line and exit code 2 — a drgn fault says what could
not be read, an unexpected exception says how to get its traceback, and
``$DRGN_P2P_DEBUG`` gives the traceback back — and log warnings from drgn
come out as one ``warning:`` line each."""

import logging
from typing import List

import drgn
import pytest

from drgn_p2p import cli as cli_mod
from drgn_p2p import target
from drgn_p2p.errors import TargetError


@pytest.fixture(autouse=True)
def _restore_loggers():
    """The CLI routes drgn's loggers to its stderr; undo that for the tests that follow."""
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in ("drgn", "drgn_p2p")}
    yield
    for name, (handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def run(args: List[str], capsys: pytest.CaptureFixture) -> tuple:
    with pytest.raises(SystemExit) as exit_:
        cli_mod.cli.main(args=args, prog_name="drgn-p2p", standalone_mode=False)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize(
    "exc, line",
    [
        (drgn.FaultError("could not read memory", 0xFFFF888000001000),
         "error: cannot read the target's memory: could not read memory: 0xffff888000001000"),
        (TargetError("vmcore x is [/bad] markup\nand two lines"), "error: vmcore x is [/bad] markup and two lines"),
        (LookupError("could not find 'init_task'"), "error: cannot read the target: LookupError: could not find 'init_task'"),
        (RuntimeError("boom\nsecond line"),
         "error: unexpected RuntimeError: boom second line (set DRGN_P2P_DEBUG=1 for a traceback)"),
    ],
)
def test_failures_become_one_line(exc: Exception, line: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("DRGN_P2P_DEBUG", raising=False)

    def open_program(**kwargs):
        raise exc

    monkeypatch.setattr(target, "open_program", open_program)
    code, out, err = run(["audit", "-c", "/nonexistent"], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [line]


def test_debug_env_gives_the_traceback_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRGN_P2P_DEBUG", "1")

    def open_program(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(target, "open_program", open_program)
    with pytest.raises(RuntimeError, match="boom"):
        cli_mod.cli.main(args=["audit", "-c", "/x"], prog_name="drgn-p2p", standalone_mode=False)


def test_drgn_warnings_are_one_line_each(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def open_program(**kwargs):
        logging.getLogger("drgn").warning("the given file is in the makedumpfile flattened format;\nreassemble [it]")
        logging.getLogger("drgn_p2p").warning("vmcore %s is truncated: %d of %d bytes", "x", 1, 2)
        logging.getLogger("drgn").info("not shown")
        raise TargetError("cannot open vmcore x")

    monkeypatch.setattr(target, "open_program", open_program)
    code, out, err = run(["audit", "-c", "/x"], capsys)
    assert code == 2
    assert err.splitlines() == [
        "warning: the given file is in the makedumpfile flattened format; reassemble [it]",
        "warning: vmcore x is truncated: 1 of 2 bytes",
        "error: cannot open vmcore x",
    ]


def test_shell_completion_as_the_readme_says() -> None:
    """The README's completion lines: the scripts, and a completion of a command name."""
    import os
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "drgn-p2p")
    for shell, marker in (("bash", "_drgn_p2p_completion()"), ("zsh", "#compdef drgn-p2p"), ("fish", "complete")):
        out = subprocess.run([exe], env={**os.environ, "_DRGN_P2P_COMPLETE": f"{shell}_source"},
                             stdout=subprocess.PIPE, text=True, check=True).stdout
        assert marker in out, (shell, out[:200])
    env = {**os.environ, "_DRGN_P2P_COMPLETE": "bash_complete", "COMP_WORDS": "drgn-p2p di", "COMP_CWORD": "1"}
    out = subprocess.run([exe], env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    assert "plain,diff" in out.splitlines()
