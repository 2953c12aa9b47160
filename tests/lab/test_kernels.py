# SPDX-License-Identifier: GPL-2.0-or-later
"""The kernel fetcher against the real Debian mirror (slow on a cold cache)."""

import json
import time

import pytest

from drgn_p2p.lab import kernels
from drgn_p2p.lab.kernels import (
    Kernel,
    bzimage_release,
    cached_kernels,
    elf_build_id,
    elf_sections,
    ensure_kernel,
    vmlinux_matches,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def newest() -> Kernel:
    return ensure_kernel("newest")


def test_layout(newest):
    kver = newest.kver
    assert newest.dir.name == kver
    assert newest.vmlinuz.is_file() and bzimage_release(newest.vmlinuz) == kver
    assert (newest.dir / "config").is_file()
    assert newest.config["CONFIG_ZONE_DEVICE"] == "y"
    assert newest.modules_dir == newest.dir / "lib" / "modules" / kver
    assert (newest.modules_dir / "modules.dep").stat().st_size > 0
    assert list(newest.modules_dir.rglob("nvme.ko*")), "no nvme module in the modules tree"
    assert not (newest.dir / ".debs").exists() and not (newest.dir / ".staging").exists()


def test_vmlinux_is_the_build_with_dwarf(newest):
    sections = elf_sections(newest.vmlinux)
    assert ".debug_info" in sections and sections[".debug_info"][1] > 0
    assert vmlinux_matches(newest.vmlinux, newest.vmlinuz)
    assert elf_build_id(newest.vmlinux, sections)


def test_record(newest):
    record = json.loads((newest.dir / "kernel.json").read_text())
    assert record["name"] == "newest" and record["suite"] == newest.suite == "sid"
    assert record["kver"] == newest.kver
    assert newest.cc and newest.cc.startswith("gcc-")
    assert newest.cc in record["config"]["CONFIG_CC_VERSION_TEXT"]
    assert record["build_id"] == elf_build_id(newest.vmlinux)
    assert newest.kver in {k.kver for k in cached_kernels()}


def test_second_ensure_downloads_nothing(newest, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a cached kernel must not reach apt")

    monkeypatch.setattr(kernels.apt, "download", no_network)
    monkeypatch.setattr(kernels.apt, "update", no_network)
    start = time.monotonic()
    again = ensure_kernel("newest")
    assert again.dir == newest.dir and again.vmlinux == newest.vmlinux
    assert time.monotonic() - start < 5
