# SPDX-License-Identifier: GPL-2.0-or-later
"""
Checkers the tests read reports with, none of them ours:

* :func:`kunit_parser` — the kernel's own KTAP parser,
  ``tools/testing/kunit/kunit_parser.py`` (and ``kunit_printer.py``, which it
  imports), extracted from the newest lab kernel's Debian ``linux-source-X.Y``
  package, fetched with the lab's private apt configuration;
* :func:`junit_schema` — ``junit-10.xsd``, the Jenkins xUnit plugin's JUnit
  schema that pytest validates its own ``--junitxml`` output against, from
  pytest's source distribution on PyPI (``pip download``), read with
  ``xmlschema``;
* :func:`audit_schema` — ``drgn_p2p/schema/audit-1.json``, the JSON Schema the
  package ships, checked with ``jsonschema``.

Downloads are kept under ``cache_dir()/checkers/`` (the lab's cache), so a
second run fetches nothing; only the few files needed are kept.
"""

import importlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from types import ModuleType
from typing import Dict, Sequence

__all__ = ("kunit_parser", "parse_ktap", "junit_schema", "audit_schema", "check_audit_json")

#: The files of tools/testing/kunit that parsing needs.
KUNIT_FILES = ("kunit_parser.py", "kunit_printer.py")


def _checkers_dir() -> Path:
    from drgn_p2p.lab import cache_dir

    return cache_dir() / "checkers"


def _fetch_kunit(dest: Path) -> Path:
    """Extract KUNIT_FILES of the newest lab kernel's linux-source package into a directory under *dest*."""
    from drgn_p2p.lab import apt
    from drgn_p2p.lab.kernels import manifest

    spec = manifest()["newest"]
    package = "linux-source-" + re.match(r"\d+\.\d+", spec.kver).group(0)
    version = apt.version_in(package, spec.suite)
    if version is None:
        raise RuntimeError(f"{spec.suite} offers no {package}")
    where = dest / f"{package}_{version}"
    if all((where / name).is_file() for name in KUNIT_FILES):
        return where
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        (deb,) = apt.download([f"{package}={version}"], Path(tmp))
        members = [f"{package}/tools/testing/kunit/{name}" for name in KUNIT_FILES]
        script = 'dpkg-deb --fsys-tarfile "$1" | tar -xO --occurrence=1 "$2" | tar -xJ -C "$3" --occurrence=1 "$4" "$5"'
        subprocess.run(["sh", "-c", script, "sh", str(deb), f"./usr/src/{package}.tar.xz", tmp, *members], check=True)
        staged = Path(tmp) / "out"
        staged.mkdir()
        for name, member in zip(KUNIT_FILES, members):
            shutil.move(str(Path(tmp) / member), str(staged / name))
        shutil.rmtree(where, ignore_errors=True)
        staged.rename(where)
    return where


@lru_cache(maxsize=None)
def kunit_parser() -> ModuleType:
    """The kernel's ``kunit_parser`` module (fetched on first use)."""
    where = str(_fetch_kunit(_checkers_dir() / "kunit"))
    sys.path.insert(0, where)  # kunit_parser does "from kunit_printer import Printer"
    try:
        return importlib.import_module("kunit_parser")
    finally:
        sys.path.remove(where)


def parse_ktap(text: str):
    """*text* parsed by the kernel's parser: its ``Test``, with ``counts`` and ``subtests``."""
    parser = kunit_parser()
    printer = sys.modules["kunit_printer"].null_printer
    return parser.parse_run_tests(text.splitlines(), printer)


def _fetch_junit_xsd(dest: Path) -> Path:
    """``junit-10.xsd`` from the sdist of the pytest that is installed."""
    version = metadata.version("pytest")
    xsd = dest / f"pytest-{version}" / "junit-10.xsd"
    if xsd.is_file():
        return xsd
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"pytest=={version}", "-d", tmp],
            check=True,
        )
        (sdist,) = Path(tmp).glob("pytest-*.tar.gz")
        with tarfile.open(sdist) as tar:
            member = tar.extractfile(f"pytest-{version}/testing/example_scripts/junit-10.xsd")
            data = member.read()
        xsd.parent.mkdir(exist_ok=True)
        part = xsd.with_suffix(".part")
        part.write_bytes(data)
        part.rename(xsd)
    return xsd


@lru_cache(maxsize=None)
def junit_schema():
    """``xmlschema.XMLSchema`` of junit-10.xsd (fetched on first use)."""
    import xmlschema

    return xmlschema.XMLSchema(str(_fetch_junit_xsd(_checkers_dir() / "junit")))


@lru_cache(maxsize=None)
def audit_schema() -> Dict[str, object]:
    """The JSON Schema of ``drgn-p2p audit --json``, as the package ships it."""
    return package_schema("audit-1")


@lru_cache(maxsize=None)
def package_schema(name: str) -> Dict[str, object]:
    """The JSON Schema ``drgn_p2p/schema/NAME.json`` as the package ships it."""
    return json.loads((resources.files("drgn_p2p") / "schema" / f"{name}.json").read_text())


def _check(schema: Dict[str, object], doc: object) -> None:
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator_class(schema).validate(doc)


def check_audit_json(doc: object) -> None:
    """Raise ``jsonschema.ValidationError`` unless *doc* is a valid audit document."""
    _check(audit_schema(), doc)


def check_diff_json(doc: object) -> None:
    """Raise ``jsonschema.ValidationError`` unless *doc* is a valid ``drgn-p2p diff --json`` document."""
    _check(package_schema("diff-1"), doc)


def rule_results(test) -> Dict[str, Sequence[object]]:
    """``{rule id: (status name, [subtest status names])}`` of a parsed KTAP document."""
    return {t.name: (t.status.name, [s.status.name for s in t.subtests]) for t in test.subtests}
