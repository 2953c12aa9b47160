# SPDX-License-Identifier: GPL-2.0-or-later
"""``drgn-p2p lab run --kernel newest --via qemu --format html -o FILE``, the
real command line: the page is self-contained, and every mapping the guest
held (the lines ``lab run`` prints from the guest's mappings.json) is drawn in
its process's strip — outlined as a device mapping when its scenario maps
device memory or PFNs, in the page kind and leaf level its scenario makes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from report_checkers import check_self_contained, parse_html, png_pixels, screenshot

pytestmark = pytest.mark.lab

#: Scenarios (their ``expect``) whose VMA maps device memory or PFNs, or holds device-private entries.
DEVICE = {"fsdax", "devdax-pmd", "p2pdma", "p2pdma-ro", "device-private", "device-coherent", "pfnmap-io",
          "pfnmap-io-wc", "pfnmap-io-uc", "pfnmap-io-ram", "pfnmap-ram", "pfnmap-pud", "pfnmap-ttm", "mixedmap-ram", "vdso"}
#: The page kind and leaf level a scenario's mapping must be drawn with (its kind's own memory).
DRAWN = {"fsdax": ("fsdax", None), "devdax-pmd": ("devdax", "pmd"), "p2pdma": ("p2pdma", "pte"),
         "device-private": ("device-private", None), "device-coherent": ("device-coherent", None)}

HELD = re.compile(r"^  (\S+)\s+pid (\d+)\s+(0x[0-9a-f]+) \+(0x[0-9a-f]+)\s+expect (\S+)$")


def test_lab_run_html_draws_every_held_mapping(tmp_path: Path) -> None:
    out = tmp_path / "audit.html"
    proc = subprocess.run([sys.executable, "-m", "drgn_p2p", "lab", "run", "--kernel", "newest", "--via", "qemu",
                           "--format", "html", "-o", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode in (0, 1), proc.stderr
    held = [m.groups() for m in map(HELD.match, proc.stderr.splitlines()) if m]
    assert len(held) >= 10, proc.stderr
    page = out.read_text()
    p = parse_html(page)
    check_self_contained(p, page)
    drawn = [a for t, a in p.tags if t == "g" and "data-start" in a]
    for kind, pid, addr, _, expect in held:
        hit = [a for a in drawn if a["data-pid"] == pid and int(a["data-start"], 16) <= int(addr, 16) < int(a["data-end"], 16)]
        assert len(hit) == 1, (kind, pid, addr)
        if expect in DEVICE:
            assert hit[0]["class"] == "device", (kind, hit[0])
        if expect in DRAWN:
            page_kind, level = DRAWN[expect]
            assert hit[0]["data-kind"] == page_kind and (level is None or hit[0]["data-level"] == level), (kind, hit[0])
    width, height, colours = png_pixels(screenshot(out, tmp_path / "audit.png"))
    assert height > 500 and len(colours) > 20
