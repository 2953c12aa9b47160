# SPDX-License-Identifier: GPL-2.0-or-later
"""The arm64 lab: Debian's newest arm64 kernel (4K pages, 52-bit VA, 5 levels
with -cpu max's FEAT_LPA2) booted under TCG from its own busybox root, with
anonymous memory and an ivshmem BAR (sysfs resource2) held, audited over QMP
from the x86-64 host.

Expectations come from the kernel's config and source, never from the audit:
- CONFIG_ARM64_4K_PAGES, CONFIG_ARM64_VA_BITS=52, CONFIG_PGTABLE_LEVELS=5: with
  LPA2 the user tables are 5 levels deep, the root has 2^(52-48) = 16 entries;
- pci_mmap_resource_range() (drivers/pci/mmap.c) maps the BAR with
  pgprot_device() = AttrIndx MT_DEVICE_nGnRE (4) and io_remap_pfn_range(), so
  every PTE is special (bit 56), user (bit 6), PXN and UXN (bits 53, 54), and
  the VMA is VM_IO|VM_PFNMAP; the PFNs are the BAR's, page after page;
- the holder's anonymous memory is RAM with struct pages.
"""

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import pytest
from lab_prereq import check_setup, missing

from drgn_p2p.lab.cli import audit_streams

pytestmark = pytest.mark.lab

#: MT_DEVICE_nGnRE (arch/arm64/include/asm/memory.h), what pgprot_device() selects.
MT_DEVICE_nGnRE = 4
SPECIAL, USER, PXN, UXN, VALID_PAGE = 1 << 56, 1 << 6, 1 << 53, 1 << 54, 3


@pytest.fixture(scope="module")
def arm64_guest():
    if shutil.which("qemu-system-aarch64") is None:
        missing("qemu-system-aarch64 is not installed (qemu-system-arm)")
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        missing("aarch64-linux-gnu-gcc is not installed (gcc-aarch64-linux-gnu)")
    from drgn_p2p.lab.kernels import ensure_kernel
    from drgn_p2p.lab.vm import start

    kernel = ensure_kernel("newest", "arm64")
    t0 = time.monotonic()
    guest = start(kernel, ["anon", "pcibar"])
    try:
        check_setup(guest)
        assert {m["kind"] for m in guest.mappings} == {"anon", "pcibar"}, guest.skipped
        print(f"\nlab: arm64 {kernel.kver} ready in {time.monotonic() - t0:.1f} s wall "
              f"(ready at {guest.timings['uptime_ready']:.1f} s guest uptime)", file=sys.stderr)
        yield guest
    finally:
        guest.close()


@pytest.fixture(scope="module")
def audited(arm64_guest) -> Dict:
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-test-") as tmp:
        t0 = time.monotonic()
        code, out, err = audit_streams(arm64_guest, "qemu", ["--json", "--runs", "-v", "--fail-on", "warning"],
                                       Path(tmp))
        print(f"\nlab: arm64 audit over QMP took {time.monotonic() - t0:.1f} s", file=sys.stderr)
    assert code == 0, f"audit exited {code}:\n{err[-3000:]}"
    return json.loads(out)


def _vma(doc: Dict, mapping: Dict) -> Dict:
    addr = int(mapping["addr"])
    for vma in doc["vmas"]:
        if vma["pid"] == int(mapping["pid"]) and int(vma["start"], 16) <= addr < int(vma["end"], 16):
            return vma
    raise AssertionError(f"no VMA of pid {mapping['pid']} holds {addr:#x}")


def _mapping(guest, kind: str) -> Dict:
    (m,) = [m for m in guest.mappings if m["kind"] == kind]
    return m


def test_layout_is_the_running_kernels(arm64_guest, audited):
    config = arm64_guest.kernel.config
    assert config.get("CONFIG_ARM64_4K_PAGES") == "y" and config.get("CONFIG_ARM64_VA_BITS") == "52"
    assert config.get("CONFIG_PGTABLE_LEVELS") == "5" and config.get("CONFIG_ARM64_LPA2") == "y"
    layout = audited["layout"]
    assert layout["arch"] == "arm64" and layout["page_shift"] == 12 and layout["levels"] == 5
    geometry = layout["geometry"]
    assert geometry["va_bits"] == 52
    assert [(lvl["shift"], lvl["entries"]) for lvl in geometry["levels"]] == [
        (48, 16), (39, 512), (30, 512), (21, 512), (12, 512)]
    # LPA2 on: PA[51:50] come from bits 9:8 (__pte_to_phys, 7.2 pgtable.h).
    assert (geometry["addr_high_mask"], geometry["addr_high_shift"]) == ("0x300", 42)
    assert layout["arm64"]["lpa2"] is True and layout["devmap_bit"] is None  # PTE_DEVMAP gone in v6.17
    assert layout["has_pmd_special"] is True and layout["has_pud_special"] is False


def test_anon_is_ram(arm64_guest, audited):
    m = _mapping(arm64_guest, "anon")
    vma = _vma(audited, m)
    pages = int(m["len"]) >> 12
    assert vma["pages"] == {"ram": pages}, vma["pages"]
    assert vma["special"] == 0 and vma["devmap"] == 0
    for run in vma["runs"]:
        raw = int(run["raw"], 16)
        assert (raw >> 2) & 7 == 0, f"anonymous memory not MT_NORMAL: {raw:#x}"  # protection_map: AttrIndx 0


def test_pci_bar_is_special_device_memory(arm64_guest, audited):
    m = _mapping(arm64_guest, "pcibar")
    vma = _vma(audited, m)
    assert {"PFNMAP", "IO"} <= set(vma["flag_names"]), vma["flag_names"]
    assert vma["file"].endswith("/resource2")
    pages = int(m["len"]) >> 12
    assert vma["pages"] == {"no-memmap": pages} and vma["special"] == pages and vma["leaves"] == {"pte": pages}
    # The BAR's physical start, from the guest's sysfs: PFNs are its pages in order.
    bdf = vma["file"].split("/")[-2]
    code, text = arm64_guest.run(f"sed -n 3p /sys/bus/pci/devices/{bdf}/resource")
    assert code == 0, text
    bar_start = int(text.split()[0], 16)
    runs = vma["runs"]
    assert int(runs[0]["pfn"], 16) == bar_start >> 12
    assert sum(r["count"] for r in runs) == pages
    for run in runs:
        raw = int(run["raw"], 16)
        assert raw & 3 == VALID_PAGE and (raw >> 2) & 7 == MT_DEVICE_nGnRE, f"{raw:#x}"
        assert raw & SPECIAL and raw & USER and raw & PXN and raw & UXN, f"{raw:#x}"
        assert run["page"] == "no-memmap" and run["special"]


def test_no_error_or_warning_findings(audited):
    bad = [f for f in audited["findings"] if f["severity"] in ("error", "warning")]
    assert not bad, json.dumps(bad, indent=1)[:3000]
    assert audited["summary"]["unreadable_tables"] == 0
