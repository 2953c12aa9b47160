# SPDX-License-Identifier: GPL-2.0-or-later
"""``scripts/setup`` on a copy of the project: quiet (one ``setup:`` line per
thing it installed, none of pip's own warnings or banners), silent on a
second run, and loud — with the installer's output — when an install fails."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _copy(dest: Path) -> Path:
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "drgn_p2p", dest / "drgn_p2p", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup", dest / "scripts" / "setup")
    return dest / "scripts" / "setup"


def _run(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(script)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian host")
    return tmp_path_factory.mktemp("setup")


def test_setup_says_what_it_installed_and_nothing_else(project: Path) -> None:
    first = _run(_copy(project))
    assert first.returncode == 0, first.stdout + first.stderr
    lines = (first.stdout + first.stderr).splitlines()
    assert lines and all(line.startswith("setup: ") for line in lines), lines
    assert "setup: created .venv" in lines
    (installed,) = [line for line in lines if line.startswith("setup: installed into .venv: ")]
    for package in ("drgn==", "click==", "rich==", "pytest==", "hypothesis=="):
        assert package in installed, installed
    assert lines[-1] == "setup: ready (.venv/bin/drgn-p2p)"

    again = _run(project / "scripts" / "setup")
    assert again.returncode == 0
    assert (again.stdout + again.stderr).splitlines() == ["setup: ready (.venv/bin/drgn-p2p)"]


def test_a_failed_install_shows_why(project: Path) -> None:
    if not (project / ".venv" / "bin" / "python").exists():
        pytest.skip("needs the virtualenv of the test above")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('dependencies = [', 'dependencies = [[ "not toml"'))
    failed = _run(project / "scripts" / "setup")
    assert failed.returncode == 2
    assert "setup: failed: .venv/bin/python -m pip install" in failed.stderr
    assert "Unclosed array" in failed.stderr  # pip's own explanation follows
