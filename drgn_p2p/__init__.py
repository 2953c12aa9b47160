# SPDX-License-Identifier: GPL-2.0-or-later
"""
drgn-p2p
--------

Audit ZONE_DEVICE and PFN/IO mappings in a Linux kernel's page tables.

From a drgn session::

    >>> import drgn_p2p
    >>> result = drgn_p2p.audit(prog)
    >>> for finding in result.findings:
    ...     print(finding.rule, finding.severity.label, hex(finding.start))

:func:`audit` returns the same records the ``drgn-p2p audit`` command prints.
"""

__all__ = ("audit", "AuditResult", "read_layout", "predict_gup")


def __getattr__(name: str):
    # Imported on first use, so that the pure stages (decode, rules) and
    # their unit tests do not load drgn.
    if name in ("audit", "AuditResult", "predict_gup"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "read_layout":
        from .layout import read_layout

        return read_layout
    raise AttributeError(name)
