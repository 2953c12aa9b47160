# SPDX-License-Identifier: GPL-2.0-or-later
"""``drgn-p2p lab run``'s own output, with the guest and the audits faked:
``-- --json`` leaves stdout machine-readable (one JSON line per program
source), and every ``warning:`` line of an audit goes to stderr."""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import List

import pytest
from click.testing import CliRunner

from drgn_p2p.lab import cli as lab_cli
from drgn_p2p.lab.vm import Guest

WARNING = "warning: something drgn says about the dump\n"


class FakeGuest(Guest):
    def __init__(self, out_dir: Path) -> None:  # noqa: super() not called: nothing is booted
        self.kernel = SimpleNamespace(vmlinux="/k/vmlinux", kver="7.2.13+deb14-amd64")
        self.qmp_path = "/run/qmp.sock"
        self.out_dir = out_dir
        self.mappings: List = []
        self.skipped: dict = {}

    def dump(self, path, fmt="kdump-zlib"):
        return Path(path)

    def close(self) -> None:
        pass


def _fake_audit(argv, stdout=None, stderr=None, timeout=None):
    """An audit that warns on stderr and writes its JSON document on stdout
    (merged into stdout when asked to, as a caller of subprocess may)."""
    if "--pid" in argv:  # an audit that fails: no document, one error line
        out, err = b"", b"error: no process with pid 999999\n"
        code = 2
    else:
        out = json.dumps({"schema": "drgn-p2p/audit/1", "summary": {}}, indent=1).encode() + b"\n"
        err, code = WARNING.encode(), 0
    if stderr == subprocess.STDOUT:
        return SimpleNamespace(returncode=code, stdout=err + out, stderr=None)
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


@pytest.fixture
def guest(tmp_path: Path) -> FakeGuest:
    return FakeGuest(tmp_path)


@pytest.fixture
def lab_run(guest: FakeGuest, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(lab_cli, "_boot", lambda *args: guest)
    monkeypatch.setattr(lab_cli.subprocess, "run", _fake_audit)

    def run(*args: str):
        try:
            runner = CliRunner(mix_stderr=False)
        except TypeError:  # click >= 8.2 keeps the streams apart
            runner = CliRunner()
        return runner.invoke(lab_cli.lab, ["run", "--via", "qemu", "--via", "vmcore", *args])

    return run


def test_json_stdout_is_one_json_line_per_source(lab_run) -> None:
    result = lab_run("--", "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["via"] for d in docs] == ["qemu", "vmcore"]
    assert all(d["schema"] == "drgn-p2p/lab-run/1" and d["exit_code"] == 0 for d in docs)
    assert all(d["audit"]["schema"] == "drgn-p2p/audit/1" for d in docs)
    assert WARNING.strip() in result.stderr
    assert "warning:" not in result.stdout


def test_a_failed_audit_is_a_json_line_without_a_document(lab_run) -> None:
    result = lab_run("--", "--json", "--pid", "999999")
    assert result.exit_code == 2
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["via"], d["exit_code"], d["audit"]) for d in docs] == [("qemu", 2, None), ("vmcore", 2, None)]
    assert "error: no process with pid 999999" in result.stderr


def test_text_output_keeps_warnings_off_stdout(lab_run) -> None:
    result = lab_run()
    assert result.exit_code == 0
    assert "warning:" not in result.stdout and WARNING.strip() in result.stderr


def test_a_scenario_that_failed_to_set_up_is_an_error(lab_run, guest: FakeGuest) -> None:
    guest.skipped = {
        "anon": "error: holder anon failed; log: holder: madvise(14): Invalid argument",
        "p2pdma": "kernel lacks CONFIG_PCI_P2PDMA",
    }
    result = lab_run("--", "--json")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and all(line.startswith("error: scenario anon failed to set up: holder anon failed; "
                                          "log: holder: madvise(14): Invalid argument") for line in errors)
    assert errors[-1] == result.stderr.splitlines()[-1]  # the last word
    assert len(result.stdout.splitlines()) == 2  # the audits still ran


def test_a_scenario_the_kernel_rules_out_is_no_error(lab_run, guest: FakeGuest) -> None:
    guest.skipped = {"p2pdma": "kernel lacks CONFIG_PCI_P2PDMA"}
    result = lab_run()
    assert result.exit_code == 0 and "error:" not in result.stderr


def test_a_lab_error_is_one_line_however_long(lab_run, monkeypatch: pytest.MonkeyPatch) -> None:
    from drgn_p2p.lab import LabError

    def fail(*args):
        raise LabError("no config found for 7.2.13+deb14-amd64 (looked in " + ", ".join(
            f"/a/long/path/[{i}]/config" for i in range(8)) + "); pass --config")

    monkeypatch.setattr(lab_cli, "_boot", fail)
    result = lab_run()
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: no config found for 7.2.13+deb14-amd64 (looked in /a/long/path/[0]/config, ")
    assert line.endswith("); pass --config")
