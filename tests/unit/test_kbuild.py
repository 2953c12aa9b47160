# SPDX-License-Identifier: GPL-2.0-or-later
"""The lab's kernel config fragment and the cache key of a kernel built from
a source package (the build itself: tests/lab/test_source_kernel.py)."""

from drgn_p2p.lab import kbuild
from drgn_p2p.lab.scenarios import SCENARIOS


def test_fragment_options_reads_set_and_unset_lines() -> None:
    text = "# a comment\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x\"\n"
    assert kbuild.fragment_options(text) == {"CONFIG_A": "y", "CONFIG_B": "m", "CONFIG_C": None, "CONFIG_D": '"x"'}


def test_the_fragment_turns_p2pdma_off_and_what_else_the_scenarios_need_on() -> None:
    wanted = kbuild.fragment_options(kbuild.FRAGMENT.read_text())
    assert wanted["CONFIG_PCI_P2PDMA"] is None
    off = {name for name, value in wanted.items() if value is None}
    needed = {opt for s in SCENARIOS for opt in s.on("amd64").requires}
    assert needed & off == {"CONFIG_PCI_P2PDMA"}
    for opt in ("CONFIG_DEVICE_PRIVATE", "CONFIG_ZONE_DEVICE", "CONFIG_DEBUG_INFO_DWARF5", "CONFIG_9P_FS",
                "CONFIG_NET_9P_VIRTIO", "CONFIG_OVERLAY_FS", "CONFIG_FW_CFG_SYSFS", "CONFIG_BLK_DEV_NVME"):
        assert wanted[opt] == "y", opt


def test_the_key_covers_version_fragment_and_compiler() -> None:
    key = kbuild.source_kernel_key("7.2.13-1", "CONFIG_A=y\n", "gcc-16")
    assert key == kbuild.source_kernel_key("7.2.13-1", "CONFIG_A=y\n", "gcc-16")
    assert len({key, kbuild.source_kernel_key("7.2.13-2", "CONFIG_A=y\n", "gcc-16"),
                kbuild.source_kernel_key("7.2.13-1", "CONFIG_A=m\n", "gcc-16"),
                kbuild.source_kernel_key("7.2.13-1", "CONFIG_A=y\n", "gcc-15")}) == 4
