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
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from functools import lru_cache
from html.parser import HTMLParser
from importlib import metadata, resources
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Sequence, Tuple

__all__ = ("kunit_parser", "parse_ktap", "junit_schema", "audit_schema", "check_audit_json", "parse_html",
           "check_self_contained", "png_pixels", "screenshot")

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


class _Page(HTMLParser):
    """Tags, attributes, text and nesting of a page."""

    VOID = {"meta", "br", "rect", "path", "circle", "link", "img", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: List[str] = []
        self.tags: List[Tuple[str, Dict[str, str]]] = []
        self.text: List[str] = []
        self.errors: List[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data) -> None:
        self.text.append(data)


def parse_html(page: str) -> _Page:
    """*page* parsed; asserts every element is closed in order."""
    p = _Page()
    p.feed(page)
    p.close()
    assert not p.errors and p.stack == [], (p.errors, p.stack)
    return p


def check_self_contained(p: _Page, page: str) -> None:
    """No script, no stylesheet or image or font from anywhere, no link out."""
    assert not {t for t, _ in p.tags} & {"script", "link", "img", "iframe", "object", "embed"}
    for tag, attrs in p.tags:
        for name, value in attrs.items():
            if name in ("src", "href", "xlink:href", "action"):
                raise AssertionError(f"<{tag} {name}={value!r}>")
            if name == "xmlns":
                assert value == "http://www.w3.org/2000/svg"
            elif value and "url(" in value:
                assert value.startswith("url(#"), value
    assert "@import" not in page and "@font-face" not in page
    assert page.count("http") == page.count('xmlns="http://www.w3.org/2000/svg"')


def png_pixels(data: bytes) -> Tuple[int, int, set]:
    """Width, height and the set of distinct pixels of an 8-bit RGB/RGBA PNG (decoded here)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif ctype == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours = set()
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 7))  # a sample of every 7th pixel
        prev = line
    return width, height, colours


def screenshot(page: Path, png: Path, width: int = 1000) -> bytes:
    """*page* rendered by wkhtmltoimage (QtWebKit, offscreen, no JavaScript, no network)."""
    tool = shutil.which("wkhtmltoimage")
    assert tool, "wkhtmltoimage is missing: scripts/setup installs it (Debian package wkhtmltopdf)"
    subprocess.run([tool, "--quiet", "--disable-javascript", "--disable-local-file-access", "--width", str(width),
                    str(page), str(png)], check=True, timeout=120,
                   env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(page.parent)})
    return png.read_bytes()
