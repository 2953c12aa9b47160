# SPDX-License-Identifier: GPL-2.0-or-later
"""
Baselines
---------

``drgn-p2p audit --baseline FILE``: known findings, each with the reason it
is accepted, so that an audit fails only on findings that are new.

The file is TOML (Python 3.11+) or, named ``*.json``, JSON: a list of
``suppress`` entries. Each entry names a ``rule`` and a ``reason`` (both
required, the reason not empty) and may narrow the mapping kind it matches
(:mod:`drgn_p2p.kinds`) with ``file``, ``ops``, ``share`` and ``prot``; a key
left out matches any value. A finding is suppressed by the first entry whose
rule and given keys match its VMA's mapping kind — never by address or PID,
so a baseline written on one boot holds on the next. ``file`` is a path as the
report shows it (a ``mktemp`` name, ``NAME.XXXXXX``, matches any such name) or
``anon``; ``ops`` a ``vm_ops`` symbol; ``share`` ``shared`` or ``private``;
``prot`` the permissions asked for as ``rwx`` with ``-`` for each one not
asked for::

    # drgn-p2p baseline
    [[suppress]]
    rule = "mixedmap-all-struct-pages"
    ops = "special_mapping_vmops"
    reason = "the vDSO data pages: reviewed, VM_MIXEDMAP by design"

    [[suppress]]
    rule = "pfnmap-not-special"
    file = "/sys/devices/pci0000:00/0000:00:03.0/resource2"
    share = "shared"
    reason = "out-of-tree driver, fixed in our 2.3 release"

JSON: ``{"suppress": [{"rule": …, "reason": …, "ops": …}, …]}``.

A suppressed finding is still reported — marked suppressed, with its reason,
in every format — but it does not count for the exit code, and in KTAP and
JUnit it does not fail its test.
"""

import json
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

from .errors import UsageError
from .kinds import MappingKind, mapping_kind, normal_file, normal_ops
from .records import Finding, Layout

__all__ = ("Suppression", "load_baseline", "parse_baseline", "suppress", "finding_kind")

#: The keys of an entry that narrow the mapping kind it matches.
KIND_KEYS = ("file", "ops", "share", "prot")
_KEYS = ("rule", "reason") + KIND_KEYS


@dataclass(frozen=True)
class Suppression:
    """One baseline entry: a rule, the mapping kind it applies to (None: any), and why."""

    rule: str
    reason: str
    file: Optional[str] = None
    ops: Optional[str] = None
    share: Optional[str] = None
    prot: Optional[str] = None

    def matches(self, rule: str, kind: MappingKind) -> bool:
        return rule == self.rule and all(
            getattr(self, key) is None or getattr(self, key) == getattr(kind, key) for key in KIND_KEYS
        )


def parse_baseline(data: object, where: str) -> Tuple[Suppression, ...]:
    """The entries of a parsed baseline document *data* (from file *where*).

    :raises UsageError: naming the first entry that is not valid.
    """
    from .rules import RULES

    known = {r.id for r in RULES}
    if not isinstance(data, dict) or not isinstance(data.get("suppress"), list):
        raise UsageError(f"{where}: a baseline is a list of [[suppress]] entries (a 'suppress' list in JSON)")
    unknown_top = sorted(set(data) - {"suppress"})
    if unknown_top:
        raise UsageError(f"{where}: unknown key {unknown_top[0]!r} (a baseline has only 'suppress' entries)")
    entries = []
    for number, entry in enumerate(data["suppress"], 1):
        what = f"{where}: suppress entry {number}"
        if not isinstance(entry, dict):
            raise UsageError(f"{what} is not a table")
        extra = sorted(set(entry) - set(_KEYS))
        if extra:
            raise UsageError(f"{what}: unknown key {extra[0]!r} (keys: {', '.join(_KEYS)})")
        for key in _KEYS:
            if key in entry and not isinstance(entry[key], str):
                raise UsageError(f"{what}: {key!r} must be a string")
        if not entry.get("rule"):
            raise UsageError(f"{what} names no rule")
        if entry["rule"] not in known:
            raise UsageError(f"{what}: unknown rule {entry['rule']!r} (see 'drgn-p2p rules')")
        if not entry.get("reason", "").strip():
            raise UsageError(f"{what} ({entry['rule']}) gives no reason: every suppression needs one")
        if entry.get("share") not in (None, "shared", "private"):
            raise UsageError(f"{what}: share must be 'shared' or 'private', not {entry['share']!r}")
        values = {key: entry.get(key) for key in _KEYS}
        # As a report shows them: a mktemp name or a compiler's .NNN suffix matches any.
        if values["file"] is not None:
            values["file"] = normal_file(values["file"])
        if values["ops"] is not None:
            values["ops"] = normal_ops(values["ops"])
        entries.append(Suppression(**values))
    return tuple(entries)


def load_baseline(path: str) -> Tuple[Suppression, ...]:
    """The entries of the baseline file *path* (TOML, or JSON when named ``*.json``).

    :raises UsageError: (one line) when the file cannot be read or parsed, or
        an entry is not valid.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UsageError(f"cannot read baseline {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read baseline {path}: it is a directory") from None
    except OSError as e:
        raise UsageError(f"cannot read baseline {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"baseline {path} is not UTF-8 text") from None
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UsageError(f"baseline {path} is not JSON: {e}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            raise UsageError(f"baseline {path}: reading TOML needs Python 3.11; write it as JSON (*.json)") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"baseline {path} is not TOML: {e}") from None
    return parse_baseline(data, path)


def finding_kind(finding: Finding, layout: Layout) -> MappingKind:
    """The mapping kind of *finding*'s VMA."""
    vma = finding.vma
    return mapping_kind(vma.file, vma.ops, layout.vm_flag_names(vma.flags))


def suppress(findings: Iterable[Finding], layout: Layout, entries: Sequence[Suppression]) -> Dict[int, str]:
    """``{id(finding): reason}`` of the findings an entry of *entries* suppresses."""
    found: Dict[int, str] = {}
    for f in findings:
        kind = finding_kind(f, layout)
        for entry in entries:
            if entry.matches(f.rule, kind):
                found[id(f)] = entry.reason
                break
    return found
