# SPDX-License-Identifier: GPL-2.0-or-later
"""
Architectures
-------------

Per-architecture decoding of raw page-table entries. Each module provides
``decode_leaf(raw, va, level, layout)``, ``is_table(raw, level)``,
``table_phys(raw, layout)``, ``describe(raw, level, layout)``,
``run_bits(layout, level)``, ``geometry(...)`` (the layout's
:class:`~drgn_p2p.records.Geometry`) and ``SPECIAL_BIT``. Hot loops should fetch the module once with :func:`for_layout`;
the module-level functions here dispatch on ``layout.arch`` per call.
"""

from types import ModuleType
from typing import List, Optional, Tuple

from ..records import Layout, Leaf, Level
from . import arm64, x86_64

__all__ = ("for_layout", "decode_leaf", "describe", "special_bit", "devmap_label", "special_label")

_ARCHES = {"x86_64": x86_64, "arm64": arm64}


def for_layout(layout: Layout) -> ModuleType:
    """The decoder module for ``layout.arch``; KeyError names unsupported arches."""
    try:
        return _ARCHES[layout.arch]
    except KeyError:
        raise KeyError(f"no page-table decoder for architecture {layout.arch!r}") from None


def decode_leaf(raw: int, va: int, level: Level, layout: Layout) -> Optional[Leaf]:
    return for_layout(layout).decode_leaf(raw, va, level, layout)


def describe(raw: int, level: Level, layout: Layout) -> Tuple[List[str], str]:
    return for_layout(layout).describe(raw, level, layout)


def special_bit(layout: Layout) -> int:
    return for_layout(layout).SPECIAL_BIT


def special_label(layout: Layout) -> str:
    """``"special (bit 9)"`` — for rule messages."""
    return f"special (bit {special_bit(layout)})"


def devmap_label(layout: Layout) -> str:
    """``"devmap (bit 57)"``, or ``"devmap"`` on kernels without the bit."""
    bit = layout.devmap_bit
    return "devmap" if bit is None else f"devmap (bit {bit})"
