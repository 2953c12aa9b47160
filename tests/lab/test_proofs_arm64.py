# SPDX-License-Identifier: GPL-2.0-or-later
"""
Rule proofs on arm64: the proof of ``test_proofs.py`` (every rule fires on a
page table ``p2p_violate`` broke, every control stays silent) on Debian's
arm64 kernels, with the module and ``violate_holder`` cross-built for them
and handed to the busybox root through its out share.

The module flips arm64's software bits (PTE_SPECIAL, bit 56; PTE_DEVMAP,
bit 57, while it existed) and builds its ZONE_DEVICE chunks on the
ivshmem BAR of the ``pcibar`` scenario, which QEMU virt places in its
64-bit PCIe window, far above RAM. A PMD case maps one PMD leaf of the
running kernel: 32 MiB with 16 KiB pages, which the 16 MiB ``pcibar`` BAR
cannot hold, so the 16K boot gets an unbound 128 MiB ivshmem BAR as well,
which the module ranks first (room for a PMD leaf). The 4K 7.2 kernel is
proved with LPA2 (5 levels) in the default tier; without it (4 levels), the
16K kernel and trixie's 6.12 (which still has PTE_DEVMAP, bit 57) in the
full one.

The entries join the proof document under ``arm64/<kernel>[-4level]``.
"""

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest
from lab_prereq import check_setup, missing, tiered

from drgn_p2p.lab import kmod
from drgn_p2p.lab.scenarios import ARM64_MAIN_BOOT
from test_kmod import _can_build
from test_proofs import _prove, _record_kernel
from test_proofs import (test_case, test_clean_guest_has_no_errors, test_controls_silent,
                         test_layout_matches_the_kernel_headers, test_no_stray_findings)

pytestmark = pytest.mark.lab

#: test_proofs' checks, collected here again against this module's ``proved``.
__all__ = ("test_layout_matches_the_kernel_headers", "test_clean_guest_has_no_errors", "test_case",
           "test_controls_silent", "test_no_stray_findings")

#: (kernel, LPA2 on the CPU) of each proof boot.
BOOTS = {"4k-lpa2": ("newest", True), "4k-48bit": ("newest", False), "16k-lpa2": ("newest-16k", True),
         "6.12-4k-lpa2": ("6.12", True)}

#: An unbound ivshmem BAR with room for a 32 MiB PMD leaf after the module's ZONE_DEVICE chunks.
BIG_BAR = ("-object", "memory-backend-memfd,id=qp-ivs-proof,size=128M,share=on",
           "-device", "ivshmem-plain,memdev=qp-ivs-proof")


@pytest.fixture(scope="module", params=tiered(BOOTS, ["4k-lpa2"]))
def proved(request) -> Dict[str, Any]:
    """One arm64 boot's proof entry (also merged into the proof document)."""
    _can_build()
    for tool, package in (("qemu-system-aarch64", "qemu-system-arm"), ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed ({package})")
    from drgn_p2p.lab.kernels import ensure_kernel
    from drgn_p2p.lab.vm import start

    name, lpa2 = BOOTS[request.param]
    kernel = ensure_kernel(name, "arm64")
    violate = kmod.build_module(kernel, "p2p_violate")
    holder = kmod.build_holder("arm64")
    started = time.monotonic()
    guest = start(kernel, list(ARM64_MAIN_BOOT), la57=lpa2,
                  extra_qemu_args=BIG_BAR if kernel.config.get("CONFIG_ARM64_16K_PAGES") == "y" else ())
    try:
        check_setup(guest)
        # The guest reads them from its out share (/out).
        for path in (violate, holder):
            shutil.copy2(path, guest.out_dir / path.name)
        label = f"arm64/{name}" + ("" if lpa2 else "-4level")
        entry = _prove(label, guest, kernel, Path("/out") / violate.name, Path("/out") / holder.name, started)
    finally:
        guest.close()
    path = _record_kernel(request.config, label, entry)
    print(f"\nproof: {kernel.kver} ({request.param}) in {entry['seconds']:.0f} s → {path}", file=sys.stderr)
    return entry
