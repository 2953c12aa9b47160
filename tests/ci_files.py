# SPDX-License-Identifier: GPL-2.0-or-later
"""The CI files of docs/ci and the ``drgn-p2p`` command lines they run."""

import shlex
from pathlib import Path
from typing import Dict, List

import yaml

DOCS_CI = Path(__file__).resolve().parents[1] / "docs" / "ci"
GITHUB = DOCS_CI / "github-actions.yml"
GITLAB = DOCS_CI / "gitlab-ci.yml"


def load(path: Path) -> Dict:
    return yaml.safe_load(path.read_text())


def github_scripts(doc: Dict) -> Dict[str, List[str]]:
    """Job name → the shell lines of its ``run`` steps."""
    return {name: [line for step in job["steps"] if "run" in step for line in step["run"].splitlines() if line.strip()]
            for name, job in doc["jobs"].items()}


def gitlab_scripts(doc: Dict) -> Dict[str, List[str]]:
    """Job name (not hidden templates) → its ``script`` lines."""
    return {name: list(job["script"]) for name, job in doc.items()
            if isinstance(job, dict) and "script" in job and not name.startswith(".")}


def drgn_p2p_lines(lines: List[str]) -> List[str]:
    """The lines that run ``drgn-p2p``."""
    return [line for line in lines if line.lstrip().startswith("drgn-p2p ")]


def argv(line: str, env: Dict[str, str]) -> List[str]:
    """*line*'s arguments after ``drgn-p2p``, up to a redirection or ``||``, with
    ``$VAR``/``"$VAR"`` from *env*, the way the shell splits them (globs left as they are)."""
    words = []
    for word in shlex.split(line)[1:]:
        if word in (">", "||", "&&", "|") or word.startswith(">"):
            break
        for name, value in env.items():
            word = word.replace(f"${name}", value)
        words.append(word)
    return words
