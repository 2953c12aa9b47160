# SPDX-License-Identifier: GPL-2.0-or-later
"""
Mapping kinds
-------------

What a mapping *is*, the same on every boot and every machine: the VMA's
file, its ``vm_ops`` symbol, and how the process asked for it. Two audits
(``drgn-p2p diff``) and a finding and a baseline entry (``audit
--baseline``) are matched by it, never by an address or a PID.

* the file: its path, ``anon`` for anonymous memory; a temporary name made
  by ``mktemp``/``mkstemp`` (``NAME.`` and six letters or digits, at least
  one of them upper case or a digit) reads ``NAME.XXXXXX``, and a
  `` (deleted)`` suffix is dropped;
* ``vm_ops``: the symbol, ``-`` when NULL, without the ``.NNN`` suffix a
  compiler gives a static symbol (``dummy_vm_ops.251``), which differs per
  build;
* ``shared`` (``VM_SHARED`` or ``VM_MAYSHARE``) or ``private``, and the
  permissions asked for (``VM_READ``/``VM_WRITE``/``VM_EXEC`` as ``rwx``).

The flags the kernel chooses (``VM_PFNMAP``, ``VM_MIXEDMAP``, ``VM_IO``, …)
are not part of the kind: they are what a diff compares.
"""

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

__all__ = ("MappingKind", "mapping_kind", "kind_of_vma_json", "normal_file", "normal_ops")

#: ``mktemp``/``mkstemp`` names.
_MKTEMP = re.compile(r"^(.+\.)(?=[A-Za-z0-9]{6}$)(?=.*[A-Z0-9])[A-Za-z0-9]{6}$")
#: The ``.NNN`` a compiler appends to a static symbol's name.
_LOCAL_SUFFIX = re.compile(r"\.\d+$")


@dataclass(frozen=True, order=True)
class MappingKind:
    """What a mapping is: file, ``vm_ops``, how it was asked for."""

    file: str  # path with mktemp names as NAME.XXXXXX, "anon" for anonymous memory
    ops: str  # vm_ops symbol, "-" when NULL
    share: str  # "shared" or "private"
    prot: str  # "rwx" with "-" for each permission not asked for

    @property
    def label(self) -> str:
        return f"{self.file} [{self.ops}] {self.share} {self.prot}"


def normal_file(path: Optional[str]) -> str:
    """*path* as a mapping kind names it (``anon`` for None)."""
    if path is None:
        return "anon"
    if path.endswith(" (deleted)"):
        path = path[: -len(" (deleted)")]
    return "/".join(_MKTEMP.sub(r"\1XXXXXX", part) for part in path.split("/"))


def normal_ops(ops: Optional[str]) -> str:
    """The ``vm_ops`` symbol *ops* as a mapping kind names it (``-`` for None)."""
    return _LOCAL_SUFFIX.sub("", ops) if ops else "-"


def mapping_kind(file: Optional[str], ops: Optional[str], flag_names: Iterable[str]) -> MappingKind:
    """The kind of a VMA with *file*, *ops* and the ``VM_*`` names *flag_names*."""
    names = set(flag_names)
    share = "shared" if names & {"SHARED", "MAYSHARE"} else "private"
    prot = "".join(c if flag in names else "-" for c, flag in (("r", "READ"), ("w", "WRITE"), ("x", "EXEC")))
    return MappingKind(normal_file(file), normal_ops(ops), share, prot)


def kind_of_vma_json(vma: Mapping) -> MappingKind:
    """The kind of a ``vma`` object of an audit document."""
    return mapping_kind(vma.get("file"), vma.get("ops"), vma.get("flag_names") or ())
