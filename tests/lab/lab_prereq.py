# SPDX-License-Identifier: GPL-2.0-or-later
"""What a lab test does when the host lacks something it needs (root, QEMU,
a compiler, kexec): under ``-m lab`` that is a failure, so that a run that
tested nothing cannot pass green, unless the user opts out explicitly with
``DRGN_P2P_LAB_SKIP_MISSING=1``. A skip for what a *kernel* lacks (a config
option) is not this: those stay skips, naming the option."""

import os

import pytest

#: Set to 1 to skip, not fail, lab tests whose host prerequisites are missing.
SKIP_MISSING_ENV = "DRGN_P2P_LAB_SKIP_MISSING"
#: Set to ``full`` for the slower tier: the GUP ground truth and the mm
#: selftests on every x86-64 lab kernel (the full selftest tier on the newest)
#: and every arm64 boot. Without it (``scripts/test``, CI) those run on the
#: newest kernel of each architecture only.
TIER_ENV = "DRGN_P2P_LAB_TIER"


def full_tier() -> bool:
    """Whether the slower tier runs (``$DRGN_P2P_LAB_TIER=full``)."""
    return os.environ.get(TIER_ENV) == "full"


def tiered(every, newest):
    """*every* in the full tier, else *newest* (the newest kernel's part)."""
    return list(every) if full_tier() else list(newest)


def missing(reason: str) -> None:
    """Fail (or, when opted out, skip) the current test: *reason* names what is missing."""
    if os.environ.get(SKIP_MISSING_ENV) == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason} (the lab needs it; scripts/setup installs it, or set {SKIP_MISSING_ENV}=1 to skip)",
                pytrace=False)


def check_setup(guest) -> None:
    """Fail unless every scenario the guest's kernel supports was set up.

    A scenario is either held or skipped with a reason: a kernel that lacks a
    config option is a skip, but a setup that failed in the guest (a reason
    starting ``error:``) is a regression of the lab or the kernel, never a
    skip: the tests that would have used the mapping cannot run.
    """
    failed = guest.failed
    if failed:
        pytest.fail(f"{guest.kernel.kver}: scenarios failed to set up: {failed}", pytrace=False)
