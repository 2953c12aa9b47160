# SPDX-License-Identifier: GPL-2.0-or-later
"""docs/ci run on the newest lab kernel: the GitHub workflow's ``drgn-p2p``
lines, exactly as written, by bash with ``KERNEL=newest`` and the venv's
``drgn-p2p`` on PATH (the GitLab file runs the same command lines, checked
here too): the JUnit validates against junit-10.xsd, the KTAP parses with the
kernel's kunit_parser, the matrix job writes a document of the newest kernel
and the merge job renders it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ci_files import GITHUB, GITLAB, argv, drgn_p2p_lines, github_scripts, gitlab_scripts, load
from report_checkers import junit_schema, parse_ktap

pytestmark = pytest.mark.lab


def _argvs(scripts):
    return [argv(line, {"KERNEL": "newest"}) for job in scripts.values() for line in drgn_p2p_lines(job)]


def test_ci_command_lines_run_on_the_newest_lab_kernel(tmp_path: Path) -> None:
    github = github_scripts(load(GITHUB))
    assert sorted(_argvs(github)) == sorted(_argvs(gitlab_scripts(load(GITLAB))))  # one run covers both files
    env = dict(os.environ, KERNEL="newest", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    codes = {}
    for job in ("audit", "matrix", "matrix-merge"):
        for line in drgn_p2p_lines(github[job]):
            proc = subprocess.run(["bash", "-ec", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=1800)
            codes[line] = proc.returncode
            assert proc.returncode in ((0, 1) if " lab run " in line else (0,)), (line, proc.stderr[-3000:])
    junit_schema().validate(str(tmp_path / "drgn-p2p-audit.xml"))
    test = parse_ktap((tmp_path / "drgn-p2p-audit.ktap").read_text())
    assert test.subtests and (test.counts.errors, test.counts.crashed) == (0, 0)
    doc = json.loads((tmp_path / "matrix-newest.json").read_text())
    assert list(doc["kernels"]) == ["newest"] and doc["kernels"]["newest"]["mappings"]
    merged = json.loads((tmp_path / "matrix" / "matrix.json").read_text())
    assert merged["kernels"].keys() == doc["kernels"].keys()
    assert (tmp_path / "matrix" / "matrix.html").read_text().startswith("<!DOCTYPE html>")
