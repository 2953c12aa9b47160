# SPDX-License-Identifier: GPL-2.0-or-later
"""
QEMU lab
--------

The test lab: fetching Debian kernels with their debug info, building test
modules and booting the kernels under QEMU. Everything it downloads or builds
lives in :func:`cache_dir`, never in the source tree.
"""

import os
from pathlib import Path

from drgn_p2p.errors import P2PError

__all__ = ("LabError", "cache_dir")


class LabError(P2PError):
    """The lab could not fetch, build or boot something (one-line message)."""


def cache_dir() -> Path:
    """
    Return the lab's cache directory: ``$XDG_CACHE_HOME/drgn-p2p``, or
    ``~/.cache/drgn-p2p`` when ``XDG_CACHE_HOME`` is unset or empty.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "drgn-p2p"
