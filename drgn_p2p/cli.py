# SPDX-License-Identifier: GPL-2.0-or-later
"""
Command line
------------

``drgn-p2p COMMAND``: a thin face over the pipeline. Every command opens a
target the way drgn does (``-k`` live, ``-c VMCORE``, ``--qemu SOCKET``),
runs a pipeline stage, and renders its records. Exit codes: 0 clean, 1
findings at or above ``--fail-on``, 2 usage or target error.
"""

import functools
import json
import logging
import os
import sys
from typing import Callable, Optional, Sequence, Tuple

import click
from rich.console import Console
from rich.markup import escape

from .errors import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, P2PError, UsageError
from .records import Severity
from .report import safe_text

__all__ = ("main", "cli")

def _console_width() -> int:
    # Reports piped to a file or a CI log are read wide, not at 80 columns.
    import os
    import shutil

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return shutil.get_terminal_size().columns
    return 160


_stdout = Console(highlight=False, soft_wrap=False, width=_console_width())
_stderr = Console(stderr=True, highlight=False)


#: Set to a non-empty value to get the traceback of an unexpected error.
DEBUG_ENV = "DRGN_P2P_DEBUG"


def _one_line(text: str) -> str:
    """*text* on one line, safe to print as rich markup."""
    return escape(" ".join(text.split()))


def _fail(message: str) -> None:
    _stderr.print(f"[bold red]error:[/] {_one_line(message)}", markup=True, soft_wrap=True)
    sys.exit(EXIT_ERROR)


class _WarningLines(logging.Handler):
    """Print drgn's and drgn-p2p's log warnings as one ``warning:`` line each."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001  (a malformed record must not end the run)
            text = str(record.msg)
        _stderr.print(f"[yellow]warning:[/] {_one_line(text)}", markup=True, soft_wrap=True)


def _route_warnings() -> None:
    """Send the ``drgn`` and ``drgn_p2p`` loggers' warnings to stderr as single lines."""
    for name in ("drgn", "drgn_p2p"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _WarningLines) for h in logger.handlers):
            handler = _WarningLines(logging.WARNING)
            logger.addHandler(handler)
            logger.propagate = False


class Session:
    """The ``drgn.Program`` of a drgn session, as the click context's object.

    The drgn commands (:mod:`drgn_p2p.drgn_commands`) run these very click
    commands with it: the target is the session's program, never one the
    command opens.
    """

    def __init__(self, prog) -> None:
        self.prog = prog


#: The error when a drgn command is given a program source of its own.
SESSION_IS_TARGET = ("inside drgn the session's program is the target: "
                     "give none of -k, -c, --qemu, -s, --debug-directory and --architecture")


def session_program():
    """The program of the drgn session running this command, or None (the CLI)."""
    ctx = click.get_current_context(silent=True)
    session = ctx.find_object(Session) if ctx is not None else None
    return session.prog if session is not None else None


def target_options(func: Callable) -> Callable:
    """The program-source options shared by every command (drgn's flags)."""

    @click.option("-k", "--kernel", "live", is_flag=True, help="Debug the running kernel through /proc/kcore (default; root only).")
    @click.option("-c", "--core", metavar="VMCORE", help="Debug a vmcore (ELF or kdump-compressed).")
    @click.option("--qemu", metavar="SOCKET", help="Debug a QEMU guest through its QMP unix socket.")
    @click.option("-s", "--symbols", metavar="PATH", multiple=True, help="vmlinux (and module) files with debug info; repeatable.")
    @click.option("--debug-directory", metavar="DIR", multiple=True, help="Directory to search for debug info; repeatable.")
    @click.option("--architecture", metavar="ARCH", help="Architecture of a dump that lacks it (QEMU kdump: x86_64).")
    @functools.wraps(func)
    def wrapper(*args, live, core, qemu, symbols, debug_directory, architecture, **kwargs):
        session = session_program()
        if session is not None:
            if live or core or qemu or symbols or debug_directory or architecture:
                _fail(SESSION_IS_TARGET)
            return func(*args, open_target=lambda: session, **kwargs)
        if sum(bool(x) for x in (live, core, qemu)) > 1:
            _fail("give at most one of -k, -c and --qemu")

        def open_target():
            from .target import open_program

            return open_program(
                core=core,
                qemu=qemu,
                symbols=symbols,
                debug_directories=debug_directory,
                architecture=architecture,
            )

        return func(*args, open_target=open_target, **kwargs)

    return wrapper


def _guard(func: Callable) -> Callable:
    """Turn every failure into a one-line error and exit code 2.

    Expected failures (:class:`P2PError`) print their message; a target that
    cannot be read (``drgn.FaultError`` and friends) says what could not be
    read; anything else is a bug, reported on one line too unless
    ``$DRGN_P2P_DEBUG`` asks for the traceback.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except P2PError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            _fail("interrupted")
        except BrokenPipeError:
            sys.exit(EXIT_ERROR)
        except Exception as e:  # drgn.FaultError and friends from a broken target
            import drgn

            text = str(e).strip()
            if isinstance(e, drgn.FaultError):
                _fail(f"cannot read the target's memory: {text}")
            if isinstance(e, (drgn.ObjectAbsentError, LookupError, OSError)):
                _fail(f"cannot read the target: {type(e).__name__}: {text}")
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(f"unexpected {type(e).__name__}: {text} (set {DEBUG_ENV}=1 for a traceback)")

    return wrapper


def _parse_int(value: str, what: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a number") from None


def _parse_range(value: Optional[str]) -> Optional[Tuple[int, int]]:
    if not value:
        return None
    start, sep, end = value.partition("-")
    if not sep:
        raise UsageError(f"--range {value!r} is not START-END")
    lo, hi = _parse_int(start, "range start"), _parse_int(end, "range end")
    if hi <= lo:
        raise UsageError(f"--range {value!r} is empty")
    return lo, hi


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="drgn-p2p")
def cli() -> None:
    """Audit ZONE_DEVICE and PFN/IO mappings in a Linux kernel's page tables.

    Reads the kernel with drgn — live (/proc/kcore, root), from a vmcore, or
    from a QEMU guest over QMP — walks every process's VMAs and page tables,
    and checks the special/devmap/huge bits and VM_PFNMAP/VM_MIXEDMAP/VM_IO
    flags that the mm maintainers argue device memory must carry.
    """
    _route_warnings()


_SEVERITIES = {"error": Severity.ERROR, "warning": Severity.WARNING, "info": Severity.INFO}


@cli.command()
@target_options
@click.option("-p", "--pid", "pids", multiple=True, type=int, help="Only this process (thread-group id); repeatable.")
@click.option("--comm", "comms", multiple=True, help="Only tasks with this name; repeatable.")
@click.option("--kind", "kinds", multiple=True, help="Only VMAs mapping this page kind (fsdax, devdax, p2pdma, device-private, device-coherent, no-memmap, ram, …); repeatable.")
@click.option("--rule", "rules", multiple=True, help="Only this rule id; repeatable (see 'drgn-p2p rules').")
@click.option("--range", "va_range", metavar="START-END", help="Only this virtual address range.")
@click.option("--format", "fmt", metavar="FORMAT", help="text (default), json (schema drgn-p2p/audit/1), ktap (KTAP version 1: a test per rule), junit (JUnit XML) or html (one self-contained page).")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
@click.option("--runs", "keep_runs", is_flag=True, help="With --json: list every VMA's coalesced runs of leaves (raw entries).")
@click.option("--fail-on", type=click.Choice(list(_SEVERITIES)), default="error", show_default=True, help="Exit 1 when a finding is at least this severe (KTAP and JUnit fail the same findings).")
@click.option("--baseline", metavar="FILE", help="Known findings (TOML, or JSON when *.json), each with a reason: they are reported as suppressed and do not count for the exit code.")
@click.option("-v", "--verbose", is_flag=True, help="Show every VMA, not only device and PFN mappings.")
@_guard
def audit(open_target, pids, comms, kinds, rules, va_range, fmt, as_json, output, keep_runs, fail_on, baseline, verbose) -> None:
    """Walk every process's page tables and report rule violations."""
    from .formats import check_format, render
    from .pipeline import audit as run_audit, check_selection
    from .report import print_audit

    if as_json and fmt not in (None, "json"):
        raise UsageError(f"--json is --format json: give one of --json and --format {fmt}")
    fmt = check_format("json" if as_json else fmt or "text")
    if output:
        _check_output(output)
    rng = _parse_range(va_range)
    check_selection(rules=rules, kinds=kinds)
    entries = ()
    if baseline:
        from .baseline import load_baseline

        entries = load_baseline(baseline)
    prog = open_target()
    with _progress() as progress:
        result = run_audit(
            prog, pids=pids, comms=comms, kinds=kinds, rules=rules, va_range=rng, progress=progress,
            keep_runs=keep_runs,
        )
    if pids and not result.stats.processes:
        raise _no_process(pids, result)
    if entries:
        from .baseline import suppress

        result.suppressed = suppress(result.findings, result.layout, entries)
    if fmt == "text" and not output:
        print_audit(_stdout, result, result.layout, verbose=verbose)
    else:
        _write(output, render(result, fmt, fail_on=_SEVERITIES[fail_on], verbose=verbose))
    worst = result.worst()
    sys.exit(EXIT_FINDINGS if worst is not None and worst >= _SEVERITIES[fail_on] else EXIT_CLEAN)


def _check_output(path: str) -> None:
    """Fail before the audit when *path* cannot be written."""
    parent = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {path}: no directory {parent}")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {path}: permission denied")


def _write(path: Optional[str], text: str) -> None:
    """*text* to the file *path*, or to stdout."""
    if not path:
        click.echo(text, nl=False)
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def _no_process(pids: Sequence[int], result) -> UsageError:
    """No process with *pids*, and why, when looking them up failed (a damaged target)."""
    why = [fault.message for _, fault in result.faults if fault.scope == "process" and fault.pid in pids]
    return UsageError(f"no process with pid {', '.join(map(str, pids))}" + (f" ({why[0]})" if why else ""))


class _progress:
    """A progress bar on stderr over the processes walked (only on a terminal)."""

    def __enter__(self) -> Callable:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = None
        if _stderr.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=_stderr, transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("opening target…", total=None)
        return self

    def __call__(self, index: int, total: int, process) -> None:
        if self._bar is not None:
            self._bar.update(
                self._task, completed=index, total=total,
                description=f"walking pid {process.pid} ({safe_text(process.comm)})",
            )

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


@cli.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Write JSON.")
@_guard
def layout(open_target, as_json) -> None:
    """Show what was learned about the target kernel, and how."""
    from .layout import read_layout
    from .report import layout_json, print_layout

    lay = read_layout(open_target())
    if as_json:
        click.echo(json.dumps(layout_json(lay), indent=1))
    else:
        print_layout(_stdout, lay)


@cli.command()
@target_options
@click.argument("pid", type=int)
@click.option("--json", "as_json", is_flag=True, help="Write JSON.")
@_guard
def maps(open_target, pid, as_json) -> None:
    """List PID's VMAs with flag mnemonics and page-kind counts."""
    from .pipeline import audit as run_audit
    from .report import audit_json, print_maps

    prog = open_target()
    result = run_audit(prog, pids=[pid])
    if not result.stats.processes:
        raise _no_process([pid], result)
    if as_json:
        click.echo(json.dumps(audit_json(result, result.layout)["vmas"], indent=1))
        return
    print_maps(_stdout, result, pid)


@cli.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Write JSON.")
@_guard
def pgmaps(open_target, as_json) -> None:
    """List every dev_pagemap: type, range, owner, ops, and who maps its pages."""
    from .pipeline import list_pgmaps
    from .report import print_pgmaps

    rows = list_pgmaps(open_target())
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    print_pgmaps(_stdout, rows)


@cli.command()
@click.option("-k", "--kernel", "live", is_flag=True, help="Check applicability against the running kernel.")
@click.option("-c", "--core", metavar="VMCORE", help="Check applicability against a vmcore.")
@click.option("--qemu", metavar="SOCKET", help="Check applicability against a QEMU guest.")
@click.option("-s", "--symbols", metavar="PATH", multiple=True)
@click.option("--architecture", metavar="ARCH")
@click.option("--json", "as_json", is_flag=True, help="Write JSON.")
@click.option("--proof", "proof_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Show a lab proof run's matrix instead: per kernel, which rules fired, stayed silent or do not apply.")
@_guard
def rules(live, core, qemu, symbols, architecture, as_json, proof_file) -> None:
    """The rule catalogue, with the arguments they encode (and, given a target, which apply)."""
    if proof_file:
        from .lab import proof

        try:
            doc = proof.load(proof_file)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read proof file: {e}") from None
        if as_json:
            click.echo(json.dumps(proof.matrix(doc), indent=1))
        else:
            proof.render_terminal(_stdout, doc)
        return

    from .rules import rule_rows

    lay = None
    session = session_program()
    if session is not None and (live or core or qemu or symbols or architecture):
        raise UsageError(SESSION_IS_TARGET)
    if session is not None or live or core or qemu:
        from .layout import read_layout
        from .target import open_program

        lay = read_layout(session if session is not None else
                          open_program(core=core, qemu=qemu, symbols=symbols, architecture=architecture))
    rows = rule_rows(lay)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        status = ""
        if row["applicable"] is not None:
            status = " [green]applies[/]" if row["applicable"] else f" [dim]not applicable: {row['not_applicable_because']}[/]"
        _stdout.print(f"[bold]{row['id']}[/] ({row['severity']}) {row['title']}{status}")
        _stdout.print(f"    kernels: {row['kernels']}; from {row['thread']}")
        _stdout.print(f"    arches: {row['arches']}")
        _stdout.print(f"    [italic]“{row['quote']}”[/]")


@cli.command()
@target_options
@click.argument("pid", type=int)
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Write JSON.")
@_guard
def explain(open_target, pid, address, as_json) -> None:
    """Walk one address of PID level by level, crash-vtop style, and judge it."""
    from .explain import explain as run_explain, print_explanation

    va = _parse_int(address, "address")
    prog = open_target()
    doc = run_explain(prog, pid, va)
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        print_explanation(_stdout, doc)


@cli.command()
@click.argument("a", metavar="A.json")
@click.argument("b", metavar="B.json")
@click.option("--json", "as_json", is_flag=True, help="Write JSON (schema drgn-p2p/diff/1).")
@_guard
def diff(a, b, as_json) -> None:
    """Compare two audits (drgn-p2p audit --json) by mapping kind, never by address or PID.

    Reports the kernel layout facts and rule applicability that differ, and per
    kind of mapping (file, vm_ops, shared/private, permissions) the page kinds,
    leaf levels, bits (special, devmap, cache mode with --runs), VMA flags and
    verdicts that changed. Exit 0 when nothing changed, 1 when something did,
    2 when a file is not a drgn-p2p audit document.
    """
    from .diff import diff_audits, diff_json, load_audit, print_diff

    result = diff_audits(load_audit(a), load_audit(b))
    if as_json:
        click.echo(json.dumps(diff_json(result), indent=1))
    else:
        print_diff(_stdout, result)
    changed = result.changed or result.only_a or result.only_b or result.layout or result.rules
    sys.exit(EXIT_FINDINGS if changed else EXIT_CLEAN)


from .lab.cli import lab  # noqa: E402  (the lab group mounts under the main one)

cli.add_command(lab)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="drgn-p2p", standalone_mode=True)


if __name__ == "__main__":
    main()
