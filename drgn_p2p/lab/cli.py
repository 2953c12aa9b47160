# SPDX-License-Identifier: GPL-2.0-or-later
"""
``drgn-p2p lab``
----------------

Boot a real kernel under QEMU with device mappings held, and audit it the
three ways a user can: over QMP from the host, from a vmcore taken with QMP
``dump-guest-memory``, and live through ``/proc/kcore`` inside the guest.
Each way runs the very ``drgn-p2p audit`` command a user would type.
"""

import json
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import click
from rich.console import Console
from rich.markup import escape

from . import LabError
from .bench import bench_command
from .kernels import fetch_command

__all__ = ("lab", "audit_argv", "audit_streams", "run_audit", "json_line", "VIAS")

_console = Console(stderr=True, highlight=False)

#: The program sources ``lab run`` can audit through, in the order it runs them.
VIAS = ("qemu", "vmcore", "live")


def _kernel(name: Optional[str], bzimage: Optional[str], vmlinux: Optional[str], modules: Optional[str],
            config: Optional[str]):
    from .kernels import ensure_kernel, user_kernel

    if bzimage or vmlinux:
        if not (bzimage and vmlinux):
            raise click.UsageError("--bzimage and --vmlinux go together")
        return user_kernel(Path(bzimage), Path(vmlinux), Path(modules) if modules else None,
                           Path(config) if config else None)
    return ensure_kernel(name or "newest")


def audit_argv(guest, via: str, args: Sequence[str], dump_dir: Path) -> Tuple[List[str], Optional[str]]:
    """The ``drgn-p2p audit`` command line for *via*, and where it must run.

    Returns ``(argv, None)`` for the host, or ``(argv, "guest")``. For
    ``vmcore`` the dump is taken first.
    """
    vmlinux = str(guest.kernel.vmlinux)
    base = [sys.executable, "-m", "drgn_p2p", "audit", "-s", vmlinux]
    if via == "qemu":
        return base + ["--qemu", guest.qmp_path] + list(args), None
    if via == "vmcore":
        core = dump_dir / "vmcore.kdump"
        guest.dump(core, fmt="kdump-zlib")
        return base + ["-c", str(core), "--architecture", "x86_64"] + list(args), None
    if via == "live":
        return base + ["-k"] + list(args), "guest"
    raise click.UsageError(f"unknown --via {via!r} (one of {', '.join(VIAS)})")


#: Where the live audit's stderr goes on the guest's results share (``/out``).
_GUEST_STDERR = "audit.stderr"


def audit_streams(guest, via: str, args: Sequence[str], dump_dir: Path,
                  timeout: float = 600) -> Tuple[int, str, str]:
    """Run ``drgn-p2p audit`` through *via*; returns ``(exit code, stdout, stderr)``."""
    argv, where = audit_argv(guest, via, args, dump_dir)
    if where == "guest":
        code, out = guest.run(shlex.join(argv) + f" 2>/out/{_GUEST_STDERR}", timeout=timeout)
        err_file = Path(guest.out_dir) / _GUEST_STDERR
        err = err_file.read_text(errors="replace") if err_file.exists() else ""
        err_file.unlink(missing_ok=True)
        return code, out, err
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def run_audit(guest, via: str, args: Sequence[str], dump_dir: Path, timeout: float = 600) -> Tuple[int, str]:
    """Run ``drgn-p2p audit`` through *via*; returns ``(exit code, stderr then stdout)``."""
    code, out, err = audit_streams(guest, via, args, dump_dir, timeout)
    return code, err + out


def json_line(via: str, code: int, stdout: str) -> str:
    """One line of ``lab run … -- --json``: schema ``drgn-p2p/lab-run/1``.

    ``audit`` is the audit's own document (schema ``drgn-p2p/audit/1``), or
    null when the audit wrote none (it failed: its ``error:`` line is on stderr).
    """
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        doc = None
    return json.dumps({"schema": "drgn-p2p/lab-run/1", "via": via, "exit_code": code, "audit": doc})


@click.group()
def lab() -> None:
    """Boot real kernels under QEMU with device mappings held (the test lab)."""


lab.add_command(fetch_command, name="fetch")
lab.add_command(bench_command, name="bench")

_kernel_options = [
    click.option("--kernel", "kernel_name", default="newest", show_default=True, help="Lab kernel: newest, 6.12 or 6.1."),
    click.option("--bzimage", metavar="PATH", help="Boot your own kernel image instead (with --vmlinux)."),
    click.option("--vmlinux", metavar="PATH", help="vmlinux with debug info of --bzimage."),
    click.option("--modules", metavar="DIR", help="Module tree of --bzimage (lib/modules/KVER)."),
    click.option("--config", "kconfig", metavar="PATH", help="Kernel config of --bzimage (default: looked for beside it, in --modules, /boot)."),
    click.option("--scenario", "scenarios", multiple=True, help="Scenario to hold (default: every one the kernel supports); repeatable."),
    click.option("--4level", "four_level", is_flag=True, help="4-level paging (-cpu max,-la57) instead of 5-level."),
]


def _with_kernel_options(func):
    for option in reversed(_kernel_options):
        func = option(func)
    return func


def _boot(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level):
    from .vm import start

    kernel = _kernel(kernel_name, bzimage, vmlinux, modules, kconfig)
    _console.print(f"lab: booting {kernel.kver} ({'4' if four_level else '5'}-level paging)…")
    guest = start(kernel, scenarios or None, la57=not four_level)
    _console.print(f"lab: {len(guest.mappings)} mappings held; boot retries: {len(guest.boot_retries)}")
    for m in guest.mappings:
        _console.print(f"  {m['kind']:<16} pid {m['pid']:<5} {int(m['addr']):#x} +{int(m['len']):#x}  expect {m['expect']}")
    for name, reason in sorted(guest.skipped.items()):
        if name not in guest.failed:
            _console.print(f"  [dim]skipped {name}: {reason}[/]")
    _report_failed(guest)
    return guest


def _report_failed(guest) -> None:
    """One ``error:`` line per scenario that failed to set up in the guest."""
    for name, reason in sorted(guest.failed.items()):
        _console.print(f"[bold red]error:[/] scenario {name} failed to set up: {escape(reason)}", soft_wrap=True)


@lab.command(context_settings={"ignore_unknown_options": True})
@_with_kernel_options
@click.option("--via", "vias", multiple=True, type=click.Choice(VIAS), help="Program source(s) to audit through (default: all three).")
@click.argument("audit_args", nargs=-1, type=click.UNPROCESSED)
def run(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level, vias, audit_args) -> None:
    """Boot, hold the mappings, and run 'drgn-p2p audit AUDIT_ARGS' each way.

    With --json among AUDIT_ARGS, stdout carries one JSON line per program
    source (schema drgn-p2p/lab-run/1); everything else goes to stderr.
    Exits with the worst exit code of the audits (0 clean, 1 findings, 2 error),
    and 2 when a scenario failed to set up.
    """
    try:
        guest = _boot(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level)
    except LabError as e:
        _console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    worst = 0
    as_json = _wants_json(audit_args)
    try:
        with tempfile.TemporaryDirectory(prefix="drgn-p2p-dump-") as tmp:
            for via in vias or VIAS:
                _console.rule(f"drgn-p2p audit via {via}")
                try:
                    code, output, errors = audit_streams(guest, via, audit_args, Path(tmp))
                except (LabError, subprocess.TimeoutExpired) as e:
                    _console.print(f"[bold red]error:[/] {via}: {escape(str(e))}", soft_wrap=True)
                    code, output, errors = 2, "", ""
                click.echo(errors, nl=False, err=True)
                click.echo(json_line(via, code, output) if as_json else output, nl=as_json)
                _console.print(f"lab: audit via {via} exited {code}")
                worst = max(worst, code)
        if guest.failed:
            _report_failed(guest)  # again, after the audits' output
            worst = 2
    finally:
        guest.close()
    sys.exit(worst)


def _wants_json(audit_args) -> bool:
    """Whether the audit arguments ask for JSON (``--json``, ``--format json``, ``--format=json``)."""
    args = list(audit_args)
    pairs = zip(args, args[1:] + [""])
    return "--json" in args or "--format=json" in args or any(a == "--format" and b == "json" for a, b in pairs)


@lab.command()
@_with_kernel_options
@click.option("--tier", type=click.Choice(("core", "full")), default=None,
              help="Which selftests: core (every kernel) or full (default: full on newest, core elsewhere).")
@click.option("--json", "json_out", metavar="FILE",
              help="Merge this kernel's run into the selftests document FILE (scripts/selftests-report renders it).")
def selftests(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level, tier, json_out) -> None:
    """Run the kernel's own mm selftests in the guest while auditing it over QMP and live.

    The selftests are built from the kernel's linux-source package (root). Prints each test's exit status
    and every audit; exits 0 when every audit exited 0 (nothing at warning or above), 1 when one drew a
    finding at warning or above, 2 when the lab or an audit failed.
    """
    import time

    from .selftests import kernel_record, merge, run_selftests

    t0 = time.monotonic()
    try:
        guest = _boot(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level)
    except LabError as e:
        _console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    booted = time.monotonic() - t0

    def show(a) -> None:
        loud = sorted({f"{sev} {rule} ({comm})" for rule, sev, comm, *_ in a.findings if sev != "info"})
        _console.print(f"lab: audit via {a.via} at {a.at:.0f} s ({a.seconds:.0f} s) during "
                       f"{', '.join(a.running) or '-'}: exit {a.exit_code}"
                       + (f" {escape(a.error)}" if a.error else "") + (f" {escape(', '.join(loud))}" if loud else ""))

    try:
        try:
            result = run_selftests(guest, tier, on_audit=show)
        except LabError as e:
            _console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            sys.exit(2)
        for t in result.tests:
            _console.print(f"  {t.name:<24} {t.verdict:<7} status {t.status:<3} {t.seconds:6.0f} s  {t.totals}")
        for name, why in result.skipped.items():
            _console.print(f"  [dim]not run {name}: {escape(why)}[/]")
        if guest.failed:
            _report_failed(guest)
    finally:
        guest.close()
    if json_out:
        path = Path(json_out)
        existing = json.loads(path.read_text()) if path.is_file() else None
        entry = kernel_record(result, kernel_name if not bzimage else guest.kernel.kver, booted)
        path.write_text(json.dumps(merge(existing, {entry["name"]: entry}), indent=1) + "\n")
        _console.print(f"lab: selftests document {path}")
    codes = [a.exit_code for a in result.audits]
    sys.exit(2 if guest.failed or 2 in codes else max(codes, default=0))


@lab.command()
@_with_kernel_options
def shell(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level) -> None:
    """Boot with the mappings held and keep the guest up until Ctrl-C."""
    try:
        guest = _boot(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level)
    except LabError as e:
        _console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    vml = shlex.quote(str(guest.kernel.vmlinux))
    _console.print(
        "\nAttach with:\n"
        f"  drgn-p2p audit --qemu {shlex.quote(guest.qmp_path)} -s {vml}\n"
        f"  drgn --qemu {shlex.quote(guest.qmp_path)} -s {vml}\n"
        f"Control QMP socket (dump-guest-memory): {guest.ctl_path}\n"
        f"Console log: {guest.run_dir / 'console.log'}\n"
        "Press Ctrl-C to power the guest off."
    )
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        guest.close()
