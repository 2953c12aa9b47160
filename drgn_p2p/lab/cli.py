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
import os
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

from ..errors import UsageError
from . import LabError
from .bench import bench_command
from .kernels import fetch_command

__all__ = ("lab", "audit_argv", "audit_streams", "run_audit", "json_line", "VIAS")

_console = Console(stderr=True, highlight=False)

#: The program sources ``lab run`` can audit through, in the order it runs them.
VIAS = ("qemu", "vmcore", "live")


def _kernel(name: Optional[str], bzimage: Optional[str], vmlinux: Optional[str], modules: Optional[str],
            config: Optional[str], arch: str = "amd64", kernel_dir: Optional[str] = None):
    from .kernels import build_tree_kernel, ensure_kernel, user_kernel

    if kernel_dir and arch != "amd64":
        raise click.UsageError("--kernel-dir boots x86-64 kernels only; --arch arm64 uses the lab's Debian kernels")
    if kernel_dir:
        if bzimage or vmlinux or config:
            raise click.UsageError("--kernel-dir takes the image, vmlinux and .config from the build tree: "
                                   "give no --bzimage, --vmlinux or --config")
        return build_tree_kernel(Path(kernel_dir), Path(modules) if modules else None)
    if name and ("/" in name or Path(name).is_file()):  # an image file, not a lab kernel's name
        if not Path(name).is_file():
            raise click.UsageError(f"--kernel {name}: no such kernel image file (nor a lab kernel's name)")
        if arch != "amd64":
            raise click.UsageError("--kernel PATH boots x86-64 kernels only; --arch arm64 uses the lab's Debian kernels")
        if bzimage:
            raise click.UsageError("give the image once: --kernel PATH or --bzimage PATH")
        bzimage = name
    if bzimage or vmlinux:
        if not (bzimage and vmlinux):
            raise click.UsageError("--bzimage and --vmlinux go together")
        if arch != "amd64":
            raise click.UsageError("--bzimage boots x86-64 kernels only; --arch arm64 uses the lab's Debian kernels")
        return user_kernel(Path(bzimage), Path(vmlinux), Path(modules) if modules else None,
                           Path(config) if config else None)
    return ensure_kernel(name or "newest", arch)



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
        if getattr(guest.kernel, "arch", "amd64") != "amd64":
            # libkdumpfile cannot translate the 52-bit (LPA2, 5-level) arm64 tables of a
            # QEMU kdump file ("No way to translate"); an ELF dump is read by drgn alone.
            core = dump_dir / "vmcore.elf"
            guest.dump(core, fmt="elf")
            return base + ["-c", str(core)] + list(args), None
        core = dump_dir / "vmcore.kdump"
        guest.dump(core, fmt="kdump-zlib")
        return base + ["-c", str(core), "--architecture", "x86_64"] + list(args), None
    if via == "live":
        if getattr(guest.kernel, "arch", "amd64") != "amd64":
            from .pyroot import audit_argv as pyroot_argv

            return pyroot_argv(guest, args), "guest"  # in the Python root the guest mounts from the host
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
    click.option("--kernel", "kernel_name", default="newest", show_default=True, help="Lab kernel: newest, 6.12 or 6.1 (arm64: newest, newest-16k, 6.12), or the path of a kernel image (with --vmlinux)."),
    click.option("--kernel-dir", metavar="BUILD", help="A kernel build tree: arch/x86/boot/bzImage, vmlinux, .config; modules from lib/modules/KVER under it (make modules_install INSTALL_MOD_PATH=BUILD) or built in place."),
    click.option("--arch", type=click.Choice(("amd64", "arm64")), default="amd64", show_default=True,
                 help="Debian architecture of the guest; arm64 runs under TCG (qemu-system-aarch64)."),
    click.option("--bzimage", metavar="PATH", help="Boot your own kernel image instead (with --vmlinux)."),
    click.option("--vmlinux", metavar="PATH", help="vmlinux with debug info of --bzimage."),
    click.option("--modules", metavar="DIR", help="Module tree of --bzimage (lib/modules/KVER)."),
    click.option("--config", "kconfig", metavar="PATH", help="Kernel config of --bzimage (default: looked for beside it, in --modules, /boot)."),
    click.option("--scenario", "scenarios", multiple=True, help="Scenario to hold (default: every one the kernel supports); repeatable."),
    click.option("--4level", "four_level", is_flag=True, help="4-level paging instead of 5-level (x86-64: -cpu max,-la57; arm64: lpa2=off, 48-bit VA)."),
]


def _with_kernel_options(func):
    for option in reversed(_kernel_options):
        func = option(func)
    return func


def _boot(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level, arch="amd64", kernel_dir=None):
    from .scenarios import plan
    from .vm import start

    kernel = _kernel(kernel_name, bzimage, vmlinux, modules, kconfig, arch, kernel_dir)
    # Said before the boot: which scenarios this kernel's config (or release) rules out, and why.
    for name, reason in sorted(plan(kernel, scenarios or None).skipped.items()):
        _console.print(f"lab: {kernel.kver} will skip {name}: {escape(reason)}", soft_wrap=True)
    paging = ("lpa2=off" if four_level else "-cpu max, LPA2") if arch == "arm64" else \
        ("4" if four_level else "5") + "-level paging"
    _console.print(f"lab: booting {kernel.kver} ({paging})…")
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
def run(kernel_name, kernel_dir, arch, bzimage, vmlinux, modules, kconfig, scenarios, four_level, vias, audit_args) -> None:
    """Boot, hold the mappings, and run 'drgn-p2p audit AUDIT_ARGS' each way.

    With --json among AUDIT_ARGS, stdout carries one JSON line per program
    source (schema drgn-p2p/lab-run/1); everything else goes to stderr.
    Exits with the worst exit code of the audits (0 clean, 1 findings, 2 error),
    and 2 when a scenario failed to set up.
    """
    try:
        audit_args = baseline_args(audit_args)
    except UsageError as e:
        _console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    try:
        guest = _boot(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level, arch, kernel_dir)
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


@lab.command()
@click.option("--kernel", "kernel_names", multiple=True, metavar="NAME",
              help="Lab kernel to run (newest, 6.12, 6.1); repeatable (default: all three).")
@click.option("--merge", "merge", is_flag=True,
              help="Render the matrix documents FILES of earlier runs (one per CI job) instead of booting.")
@click.option("-o", "--output", "out_dir", metavar="DIR",
              help="Write matrix.json, matrix.md and matrix.html into DIR (default: Markdown on stdout).")
@click.option("--json", "as_json", is_flag=True, help="Write the matrix document (JSON) on stdout.")
@click.argument("merge_paths", nargs=-1, metavar="[FILES]...")
def matrix(kernel_names, merge, out_dir, as_json, merge_paths) -> None:
    """Every scenario on every lab kernel: the mapping kind × kernel table.

    Boots each kernel with every scenario its config allows, audits it over
    QMP and tabulates, per mapping kind and kernel, the leaf levels, bits,
    VMA flags, page kinds and verdict. Exits 2 when a kernel cannot be run
    or a scenario fails to set up.
    """
    from . import matrix as m

    if merge and kernel_names:
        raise click.UsageError("give either --kernel or --merge, not both")
    if merge != bool(merge_paths):
        raise click.UsageError("--merge takes the matrix documents to merge: --merge FILE..." if merge
                               else f"unexpected argument {merge_paths[0]!r} (FILES go with --merge)")
    code = 0
    if merge:
        try:
            doc = m.load_all(merge_paths)
        except OSError as e:
            _console.print(f"[bold red]error:[/] cannot read {escape(str(e.filename))}: {escape(e.strerror or str(e))}",
                           soft_wrap=True)
            sys.exit(2)
        except ValueError as e:
            _console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            sys.exit(2)
    else:
        entries = {}
        for name in kernel_names or ("6.1", "6.12", "newest"):
            try:
                entries[name], failed = _matrix_entry(name)
            except (LabError, subprocess.TimeoutExpired, ValueError) as e:
                _console.print(f"[bold red]error:[/] {name}: {escape(str(e))}", soft_wrap=True)
                sys.exit(2)
            code = 2 if failed else code
        doc = m.merge([{"schema": m.SCHEMA, "kernels": entries}])
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "matrix.json").write_text(json.dumps(doc, indent=1) + "\n")
        (out / "matrix.md").write_text(m.render_markdown(doc))
        (out / "matrix.html").write_text(m.render_html(doc))
        _console.print(f"lab: wrote matrix.json, matrix.md and matrix.html in {out}")
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    elif not out_dir:
        click.echo(m.render_markdown(doc), nl=False)
    sys.exit(code)


def _matrix_entry(name: str):
    """Boot lab kernel *name* with every scenario, audit it over QMP; its matrix entry and failed scenarios."""
    from . import matrix as m

    guest = _boot(name, None, None, None, None, (), False)
    try:
        with tempfile.TemporaryDirectory(prefix="drgn-p2p-dump-") as tmp:
            code, out, err = audit_streams(guest, "qemu", ["--json", "--runs"], Path(tmp))
        if code not in (0, 1):
            raise LabError(f"the audit over QMP exited {code}: {err.strip().splitlines()[-1:] or ''}")
        entry = m.kernel_entry(guest.kernel.kver, guest.mappings, guest.skipped, guest.failed, json.loads(out))
        return entry, dict(guest.failed)
    finally:
        guest.close()


def baseline_args(audit_args: Sequence[str]) -> List[str]:
    """*audit_args* with the ``--baseline`` file checked and made absolute.

    The baseline is read before the guest boots (a bad one is a one-line
    error, exit 2), and its absolute path reaches the audit inside the guest
    too (``--via live`` runs with the host's root as the guest's, cwd ``/``; an arm64
    guest's live audit reads a copy on its out share, :mod:`.pyroot`).

    :raises UsageError: when the baseline cannot be read or is not valid.
    """
    from ..baseline import load_baseline

    args = list(audit_args)
    for i, arg in enumerate(args):
        if arg == "--baseline" and i + 1 < len(args):
            load_baseline(args[i + 1])
            args[i + 1] = os.path.abspath(args[i + 1])
        elif arg.startswith("--baseline="):
            path = arg.partition("=")[2]
            load_baseline(path)
            args[i] = "--baseline=" + os.path.abspath(path)
    return args


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
def selftests(kernel_name, kernel_dir, arch, bzimage, vmlinux, modules, kconfig, scenarios, four_level, tier,
              json_out) -> None:
    """Run the kernel's own mm selftests in the guest while auditing it over QMP and live.

    The selftests are built from the kernel's linux-source package (root). Prints each test's exit status
    and every audit; exits 0 when every audit exited 0 (nothing at warning or above), 1 when one drew a
    finding at warning or above, 2 when the lab or an audit failed.
    """
    import time

    from .selftests import kernel_record, merge, run_selftests

    if arch != "amd64":
        raise click.UsageError("selftests run on x86-64 guests only (the arm64 root has no build of them yet)")
    t0 = time.monotonic()
    try:
        guest = _boot(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level, arch, kernel_dir)
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
def shell(kernel_name, kernel_dir, arch, bzimage, vmlinux, modules, kconfig, scenarios, four_level) -> None:
    """Boot with the mappings held and keep the guest up until Ctrl-C."""
    try:
        guest = _boot(kernel_name, bzimage, vmlinux, modules, kconfig, scenarios, four_level, arch, kernel_dir)
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


@lab.command("gup-probe")
@_with_kernel_options
@click.option("-o", "--output", metavar="FILE", help="Write the JSON document (drgn-p2p/gup-observed/1) to FILE "
              "instead of stdout.")
@click.option("--broken", is_flag=True, help="Probe the p2p_violate module's broken mappings instead, booting "
              "again after each attempt that oopses (several boots: the lab's slower tier).")
@click.option("--case", "cases", multiple=True, metavar="NAME", help="With --broken: only this p2p_violate case "
              "(repeatable; default every case the kernel can build).")
def gup_probe(kernel_name, kernel_dir, arch, bzimage, vmlinux, modules, kconfig, scenarios, four_level, output,
              broken, cases) -> None:
    """Try each GUP user (O_DIRECT, io_uring, RDMA, vmsplice, futex, process_vm_readv,
    /proc/PID/mem) on each held mapping and record what the kernel really did.

    Exits 2 when the lab fails, or when a mapping could not be set up or probed.
    """
    from .gup import probe
    from .gupbroken import probe_broken

    if arch != "amd64":
        raise click.UsageError("gup-probe runs on x86-64 guests only (the arm64 lab holds no probe yet)")
    if output and (not Path(output).parent.is_dir() or Path(output).is_dir()):
        raise click.UsageError(f"cannot write {output}: no such directory, or it is a directory")
    if cases and not broken:
        raise click.UsageError("--case needs --broken")
    if broken and scenarios:
        raise click.UsageError("--broken probes the p2p_violate cases, not scenarios: use --case")
    say = lambda line: _console.print(escape(line), soft_wrap=True)  # noqa: E731
    try:
        kernel = _kernel(kernel_name, bzimage, vmlinux, modules, kconfig, arch, kernel_dir)
        if broken:
            observed = probe_broken(kernel, cases or None, la57=not four_level, log=say)
        else:
            observed = probe(kernel, scenarios or None, la57=not four_level, log=say)
    except LabError as e:
        _console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    text = json.dumps(observed.to_json(), indent=1) + "\n"
    if output:
        try:
            Path(output).write_text(text)
        except OSError as e:
            _console.print(f"[bold red]error:[/] cannot write {escape(output)}: {escape(e.strerror or str(e))}")
            sys.exit(2)
    else:
        click.echo(text, nl=False)
    for m in observed.mappings:
        outcomes = " ".join(f"{a.user}={a.outcome}{'*' if a.migrated else ''}" for a in m.attempts)
        _console.print(f"  {m.scenario:<16} {m.expect:<20} {escape(outcomes)}", soft_wrap=True)
    for problem in observed.problems:
        _console.print(f"[bold red]problem:[/] {escape(problem)}", soft_wrap=True)
    _console.print(f"lab: gup-probe of {observed.kernel} took {observed.timings.get('total', 0):.0f} s")
    sys.exit(2 if observed.problems else 0)
