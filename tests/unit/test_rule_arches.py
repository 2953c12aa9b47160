# SPDX-License-Identifier: GPL-2.0-or-later
"""``drgn-p2p rules`` says where each rule applies per architecture: every rule
names both architectures, and the rules whose applicability differs on arm64
(huge PFN leaves: PMD_PFNMAP without PUD_PFNMAP; DAX PUD leaves: no
HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD; the devmap bit: 57 instead of 58) say how,
with the commit that makes it so."""

import json

from click.testing import CliRunner

from drgn_p2p.cli import cli
from drgn_p2p.rules import RULES, rule_rows


def test_every_rule_names_both_architectures():
    for row in rule_rows():
        assert "x86-64" in row["arches"] and "arm64" in row["arches"], row["id"]


def test_the_rules_that_differ_on_arm64_say_how():
    arches = {r.id: r.arches for r in RULES}
    assert "PMD only" in arches["huge-pfn-not-special"] and "3e509c9b03f9" in arches["huge-pfn-not-special"]
    assert "HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD" in arches["dax-leaf-bits"]
    assert "bit 57" in arches["devmap-not-dax"] and "bit 58" in arches["devmap-not-dax"]


def test_rules_prints_them_as_text_and_json():
    runner = CliRunner()
    text = runner.invoke(cli, ["rules"]).output
    assert text.count("    arches: ") == len(RULES)
    rows = json.loads(runner.invoke(cli, ["rules", "--json"]).output)
    assert [r["arches"] for r in rows] == [r.arches for r in RULES]
