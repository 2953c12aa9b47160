# SPDX-License-Identifier: GPL-2.0-or-later
"""
Lab fixtures: one booted guest per kernel, shared by the whole session.

``lab_guest(name)`` returns the guest of the pinned kernel *name* ("newest",
"6.12", "6.1"), booted with every scenario its kernel supports, fetching the
kernel (and, through the scenario plan, test_hmm.ko) first if needed. Guests
run under TCG on both of the machine's cores, so at most one is alive: asking
for another kernel releases the previous guest (group tests by kernel). ``guest_newest`` is
``lab_guest("newest")``. A test that changes its guest (loads a module)
takes it out of the pool with ``lab_session.take(name)`` and closes it itself.
"""

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator

import pytest
from lab_prereq import check_setup, full_tier, missing

from drgn_p2p.lab.vm import Guest, start


def lab_document_path(config: pytest.Config, env: str, filename: str) -> Path:
    """Where a lab run writes a JSON document: ``$env``, else *filename* in the
    pytest cache (``.pytest_cache/d/drgn-p2p/``), else in the lab cache."""
    value = os.environ.get(env)
    if value:
        return Path(value)
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("drgn-p2p")) / filename
    from drgn_p2p.lab import cache_dir

    return cache_dir() / filename


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: boots real kernels under QEMU (slow; needs the lab's host packages)"
    )
    config.addinivalue_line(
        "markers", "full_tier: runs only in the full tier (DRGN_P2P_LAB_TIER=full); deselected otherwise"
    )


def pytest_collection_modifyitems(config: pytest.Config, items) -> None:
    """Deselect (not skip: a skip names what a kernel lacks) the full tier's tests outside it."""
    if full_tier():
        return
    keep = [item for item in items if item.get_closest_marker("full_tier") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


class _Lab:
    """Boots guests on demand, keeping at most one alive."""

    def __init__(self) -> None:
        self.guests: Dict[str, Guest] = {}

    def get(self, name: str) -> Guest:
        """The live guest for kernel *name*, booting it if needed."""
        guest = self.guests.get(name)
        if guest is not None and guest.alive():
            return guest
        self.close()
        if shutil.which("qemu-system-x86_64") is None:
            missing("qemu-system-x86_64 is not installed")
        from drgn_p2p.lab.kernels import ensure_kernel

        kernel = ensure_kernel(name)
        t0 = time.monotonic()
        guest = start(kernel)
        try:
            check_setup(guest)
        except BaseException:
            guest.close()
            raise
        print(
            f"\nlab: {kernel.kver} ready in {time.monotonic() - t0:.1f} s "
            f"(stage 2 at {guest.timings['stage2']:.1f} s wall, {guest.timings['uptime_stage2']:.1f} s uptime; "
            f"ready at {guest.timings['uptime_ready']:.1f} s uptime); "
            f"{len(guest.mappings)} mappings, skipped {sorted(guest.skipped)}, boot retries {len(guest.boot_retries)}",
            file=sys.stderr,
        )
        self.guests[name] = guest
        return guest

    def take(self, name: str) -> Guest:
        """
        The guest for kernel *name* (the live one, else a fresh boot), removed
        from the pool: the caller may change it and must close it.
        """
        guest = self.get(name)
        del self.guests[name]
        return guest

    def close(self) -> None:
        """Release every guest."""
        for guest in self.guests.values():
            guest.close()
        self.guests.clear()


@pytest.fixture(scope="session")
def lab_session() -> Iterator[_Lab]:
    """The session's guests; a test module that boots a guest of its own calls
    ``lab_session.close()`` first, so that at most one guest is alive."""
    lab = _Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="session")
def lab_guest(lab_session: _Lab) -> Callable[[str], Guest]:
    """Factory: ``lab_guest("newest")`` → a ready :class:`Guest` for that kernel."""
    return lab_session.get


@pytest.fixture
def guest_newest(lab_guest: Callable[[str], Guest]) -> Guest:
    """
    The newest pinned kernel, booted with every supported scenario held (per
    test, from the pool: a guest another test took or closed is not handed out again).
    """
    return lab_guest("newest")
