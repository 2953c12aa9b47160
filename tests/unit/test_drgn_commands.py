# SPDX-License-Identifier: GPL-2.0-or-later
"""
The ``%p2p`` drgn command without a kernel: that drgn finds it through the
``drgn.plugins`` entry point, enables it for Linux kernel programs only, and
that usage errors come back as drgn command errors or the command line's own
error line and exit status, never a traceback or an exit of the session.
(Running it on real kernels: tests/lab/test_drgn_commands.py.)
"""

import importlib.metadata

import drgn
import pytest
from drgn.commands import DEFAULT_COMMAND_NAMESPACE, CommandArgumentError, CommandNotFoundError

from drgn_p2p import drgn_commands
from drgn_p2p.cli import SESSION_IS_TARGET


def test_entry_point() -> None:
    points = {e.name: e.value for e in importlib.metadata.entry_points(group="drgn.plugins")}
    assert points.get("drgn_p2p") == "drgn_p2p.drgn_commands"


def test_registered_for_kernels_only() -> None:
    user = drgn.Program()
    with pytest.raises(CommandNotFoundError):
        DEFAULT_COMMAND_NAMESPACE.lookup(user, "p2p")
    # Registered all the same: a kernel program (a real core, in the lab test) finds it.
    assert "p2p" in DEFAULT_COMMAND_NAMESPACE._commands


def test_session_group_has_the_target_commands() -> None:
    group = drgn_commands.session_group()
    assert sorted(group.commands) == sorted(drgn_commands.COMMANDS)
    assert "lab" not in group.commands


def test_unknown_command_is_a_command_error() -> None:
    with pytest.raises(CommandArgumentError, match="No such command 'lab'"):
        drgn_commands.run(drgn.Program(), ["lab", "run"])


def test_missing_argument_is_a_command_error() -> None:
    with pytest.raises(CommandArgumentError, match="Missing argument"):
        drgn_commands.run(drgn.Program(), ["explain", "1"])


def test_own_target_is_refused(capsys) -> None:
    assert drgn_commands.run(drgn.Program(), ["audit", "-c", "vmcore"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and SESSION_IS_TARGET.split(":")[0] in err
    assert drgn_commands.run(drgn.Program(), ["rules", "-k"]) == 2
    assert capsys.readouterr().err.count("error:") == 1


def test_bad_format_is_the_cli_error(capsys) -> None:
    assert drgn_commands.run(drgn.Program(), ["audit", "--format", "yaml"]) == 2
    err = capsys.readouterr().err
    assert "unknown format 'yaml'" in err and err.count("\n") == 1


def test_help_returns_zero(capsys) -> None:
    assert drgn_commands.run(drgn.Program(), ["--help"]) == 0
    out = capsys.readouterr().out
    for name in drgn_commands.COMMANDS:
        assert name in out
