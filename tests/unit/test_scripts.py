# SPDX-License-Identifier: GPL-2.0-or-later
"""The scripts the README names run from a fresh shell, whatever ``python3``
is first on PATH: each sets up ``.venv`` and runs from it."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: A shell's environment without the virtualenv: the system's python3 has no rich or click.
BARE = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


@pytest.mark.parametrize("script", ["bench"])
def test_script_runs_from_the_venv(script: str, tmp_path: Path) -> None:
    proc = subprocess.run([str(REPO / "scripts" / script), "--help"], cwd=tmp_path, env=BARE,
                          capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and "--sizes" in proc.stdout
