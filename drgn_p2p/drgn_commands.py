# SPDX-License-Identifier: GPL-2.0-or-later
"""
drgn commands
-------------

drgn-p2p's commands inside a drgn session: ``%p2p audit``, ``%p2p explain
PID ADDRESS``, ``%p2p maps PID``, ``%p2p pgmaps``, ``%p2p rules`` and ``%p2p
layout`` in ``drgn -k``, ``drgn -c VMCORE`` or ``drgn --qemu SOCKET``.

drgn loads this module as a plugin (the ``drgn.plugins`` entry point
``drgn_p2p`` in ``pyproject.toml``) and importing it registers the command
with drgn's command framework (:func:`drgn.commands.linux.linux_kernel_custom_command`:
enabled only when the program is a Linux kernel). The command is the
``drgn-p2p`` command line itself — the same click commands, options, output
and error lines — run on the session's program (:class:`drgn_p2p.cli.Session`)
instead of a target it opens; the first command adds the symbol finder
the command line's programs have (module symbols from the target's kallsyms,
:func:`drgn_p2p.target.add_module_kallsyms`). drgn's shell syntax works: ``%p2p audit --json
> audit.json``, ``%p2p maps 1 | less``.

The command returns the exit status the command line would have exited with
(0 clean, 1 findings at or above ``--fail-on``, 2 error); a usage error
raises :class:`drgn.commands.CommandArgumentError`, so drgn prints it and the
session goes on.
"""

from typing import Any, Sequence

import click
from drgn import Program
from drgn.commands import CommandArgumentError, ParsedCommand, parse_shell_command
from drgn.commands.linux import linux_kernel_custom_command

__all__ = ("COMMANDS", "session_group", "run")

#: The ``drgn-p2p`` commands that read a target, in the order ``%p2p --help`` lists them.
COMMANDS = ("audit", "explain", "maps", "pgmaps", "rules", "layout")


def session_group() -> click.Group:
    """The ``drgn-p2p`` commands of :data:`COMMANDS` as one click group (``lab`` stays out)."""
    from .cli import cli

    group = click.Group(
        "p2p", help=cli.help, context_settings={"help_option_names": ["-h", "--help"]},
    )
    for name in COMMANDS:
        group.add_command(cli.commands[name], name)
    return group


def run(prog: Program, args: Sequence[str]) -> int:
    """Run ``drgn-p2p ARGS`` on *prog*; returns its exit status.

    :raises CommandArgumentError: for a command line click rejects.
    """
    from .cli import Session, _route_warnings
    from .target import add_module_kallsyms

    _route_warnings()
    # The program drgn opened lacks what open_program() adds for the CLI.
    add_module_kallsyms(prog)
    try:
        result = session_group().main(
            args=list(args), prog_name="p2p", standalone_mode=False, obj=Session(prog),
        )
    except click.ClickException as e:  # usage errors: click's own one-line message
        raise CommandArgumentError(f"p2p: {e.format_message()}") from None
    except click.exceptions.Abort:
        raise CommandArgumentError("p2p: aborted") from None
    except SystemExit as e:  # the command's exit status (its error line is already on stderr)
        return e.code if isinstance(e.code, int) else 2
    return result if isinstance(result, int) else 0


def _parse(source: str) -> ParsedCommand[Sequence[str]]:
    return parse_shell_command(source)


@linux_kernel_custom_command(
    name="p2p",
    description="audit ZONE_DEVICE and PFN/IO mappings (drgn-p2p)",
    usage="**p2p** {audit,explain,maps,pgmaps,rules,layout} [*options*]",
    long_description="""
    Run a drgn-p2p command on this session's program, with the command
    line's options and output: ``p2p audit [--json|--format ktap|...]``,
    ``p2p explain PID ADDRESS``, ``p2p maps PID``, ``p2p pgmaps``,
    ``p2p rules``, ``p2p layout``. ``p2p COMMAND --help`` shows a command's
    options. Returns the command line's exit status: 0 clean, 1 findings
    at or above ``--fail-on``, 2 error.
    """,
    parse=_parse,
)
def _cmd_p2p(prog: Program, name: str, args: Sequence[str], **kwargs: Any) -> int:
    return run(prog, args)
