# SPDX-License-Identifier: GPL-2.0-or-later
"""The GUP ground truth's host side (``drgn_p2p.lab.gup``): outcomes, leaf
changes, config skips, the document and its Markdown; and the holder's probe
(``guest/gup.h``) run on this host's own kernel on an anonymous mapping."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from drgn_p2p.lab import LabError, gup
from drgn_p2p.lab.scenarios import GUEST_DIR, holder_binary


def test_outcome_vocabulary():
    assert gup.outcome_of(None, 4096, 4096, [], None) == "ok"
    assert gup.outcome_of("EAGAIN", 4, 4, [], None) == "ok"  # the futex compared the word
    assert gup.outcome_of("EFAULT", 0, 4096, [], None) == "EFAULT"
    assert gup.outcome_of(None, 512, 4096, [], None) == "short"
    assert gup.outcome_of(None, 0, 4096, [], "no O_DIRECT disk") == "error"
    # A WARN: the call went on and returned; the attempt records it (Attempt.warned).
    assert gup.outcome_of(None, 4096, 4096, ["WARNING: CPU: 1 PID: 9 at mm/gup.c:123 foo"], None) == "ok"
    assert gup.outcome_of("EFAULT", 0, 4096, ["BUG: unable to handle page fault for address"], None) == "oops"
    assert gup.outcome_of("EFAULT", 0, 4096, ["qprxe0: pd#4 rxe_reg_user_mr: returned err = -14"], None) == "EFAULT"


def test_leaf_changed_ignores_soft_dirty_and_exclusive_bits():
    present = (1 << 63) | 0x1234
    assert not gup.leaf_changed(present, present | (1 << 55) | (1 << 56) | (1 << 57) | (1 << 61))
    assert gup.leaf_changed(present, (1 << 63) | 0x1235)  # another page
    assert gup.leaf_changed((1 << 62) | 0x3e0, present)  # swapped (device-private entry) → present
    assert not gup.leaf_changed(0, 1 << 55)  # pagemap sees nothing of a VM_PFNMAP


def test_user_skips_name_the_options():
    config = {"CONFIG_VIRTIO_BLK": "m", "CONFIG_IO_URING": "y", "CONFIG_FUTEX": "y", "CONFIG_PROC_FS": "y",
              "CONFIG_CROSS_MEMORY_ATTACH": "y", "CONFIG_RDMA_RXE": "n"}
    nvme = "kernel lacks CONFIG_BLK_DEV_NVME, CONFIG_PCI_P2PDMA"
    assert gup.user_skips(config) == {"ibv-reg-mr": "kernel lacks CONFIG_RDMA_RXE, CONFIG_INFINIBAND_USER_ACCESS",
                                      "odirect-nvme-read": nvme, "odirect-nvme-write": nvme}


def _line(user: str, **kw) -> dict:
    line = {"kind": "anon", "pid": 7, "start": "0x1000", "len": 65536, "expect": "anon",
            "vm_flags": "rd wr mr mw me ac ", "user": user, "addr": "0x1000", "ret": 4096, "errno": None,
            "bytes": 4096, "want": 4096, "leaf_before": "0x8000000000000010", "leaf_after": "0x8000000000000010",
            "dmesg": [], "why": None}
    line.update(kw)
    return line


def test_attempt_lines_group_by_mapping_and_find_their_vma():
    audit = {"vmas": [{"pid": 7, "start": "0x1000", "end": "0x11000", "flag_names": ["READ"]}]}
    lines = [_line("odirect-read"),
             _line("vmsplice", addr="0x2000", leaf_after="0x4000000000000020"),
             _line("odirect-read", kind="pcibar", start="0x20000", expect="pfnmap-io", errno="EFAULT", ret=-1,
                   bytes=0)]
    maps = gup._mappings(lines, audit, {})
    assert [(m.scenario, m.start, len(m.attempts)) for m in maps] == [("anon", 0x1000, 2), ("pcibar", 0x20000, 1)]
    assert maps[0].vma is audit["vmas"][0] and maps[1].vma is None
    assert maps[0].vm_flags == ("rd", "wr", "mr", "mw", "me", "ac")
    assert [a.migrated for a in maps[0].attempts] == [False, True]
    assert maps[1].attempts[0].outcome == "EFAULT"
    assert gup._mappings(lines, audit, {"vmsplice": "kernel lacks X"})[0].attempts[-1].user == "odirect-read"


def _doc(kernel: str, outcome: str) -> dict:
    attempts = [{"user": u, "outcome": outcome, "migrated": u == "futex"} for u, _ in gup.USERS]
    return {"schema": gup.SCHEMA, "kernel": kernel, "not_probed": {"uffd-wp": "hangs"}, "problems": [],
            "skipped_users": {}, "mappings": [{"scenario": "pcibar", "expect": "pfnmap-io", "attempts": attempts}]}


def test_markdown_one_cell_per_user_kernels_in_order(tmp_path: Path, capsys):
    paths = []
    for kernel, outcome in (("7.2.13+deb14-amd64", "EFAULT"), ("6.1.0-50-amd64", "EFAULT"),
                            ("6.12.117+deb13-amd64", "ok")):
        paths.append(tmp_path / f"{kernel}.json")
        paths[-1].write_text(json.dumps(_doc(kernel, outcome)))
    assert gup.main([str(p) for p in paths]) == 0
    page = capsys.readouterr().out
    assert "Kernels: `6.1.0-50-amd64`, `6.12.117+deb13-amd64`, `7.2.13+deb14-amd64`" in page
    row = next(line for line in page.splitlines() if line.startswith("| pcibar "))
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    futex = [u for u, _ in gup.USERS].index("futex")
    assert cells == ["EFAULT / ok / EFAULT"] * futex + [
        "EFAULT (leaf changed) / ok (leaf changed) / EFAULT (leaf changed)"] + [
        "EFAULT / ok / EFAULT"] * (len(gup.USERS) - futex - 1)
    assert "- not probed: uffd-wp: hangs" in page


def test_markdown_refuses_other_documents(tmp_path: Path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"schema": "drgn-p2p/audit/1"}))
    assert gup.main([str(bad)]) == 2
    assert gup.main([str(tmp_path / "missing.json")]) == 2
    assert gup.main([]) == 2
    err = capsys.readouterr().err
    assert "is not a drgn-p2p/gup-observed/1 document" in err and "usage:" in err


def test_every_user_is_in_the_guest_probe_and_described():
    source = (GUEST_DIR / "gup.h").read_text()
    for user, _ in gup.USERS:
        assert f'"{user}"' in source, user
    assert list(gup.USER_DESCRIPTIONS) == [u for u, _ in gup.USERS]


@pytest.mark.parametrize("output", ["/nonexistent-dir/observed.json", "/"])
def test_gup_probe_refuses_an_output_it_cannot_write_before_booting(output: str):
    from click.testing import CliRunner

    from drgn_p2p.lab.cli import lab

    result = CliRunner().invoke(lab, ["gup-probe", "-o", output])
    assert result.exit_code == 2 and "cannot write" in result.output


def test_holder_probes_its_own_anonymous_mapping(tmp_path: Path):
    """SIGUSR1 on this host: one JSON line per user, in order, on pages of the mapping."""
    try:
        holder = holder_binary()
    except LabError as e:
        pytest.skip(str(e))
    out = tmp_path / "anon.txt"
    Path(f"{out}.gup-req").write_text("- - -\n")  # no disk, no uverbs device, no NVMe here
    proc = subprocess.Popen([str(holder), str(out), "anon", "anon", "anon"], stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert out.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no manifest"
        kind, pid, addr, length, expect = out.read_text().split()
        os.kill(proc.pid, signal.SIGUSR1)
        result = Path(f"{out}.gup")
        while not result.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        lines = [json.loads(line) for line in result.read_text().splitlines()]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert [line["user"] for line in lines] == [u for u, _ in gup.USERS]
    start = int(addr, 16)
    for i, line in enumerate(lines):
        assert line["pid"] == int(pid) and int(line["start"], 16) == start
        assert int(line["addr"], 16) == start + i * 4096  # each user its own page
        assert "rd" in line["vm_flags"].split()
    by_user = {line["user"]: gup.attempt_of(line) for line in lines}
    assert by_user["odirect-read"].outcome == "error" and "no O_DIRECT disk" in by_user["odirect-read"].why
    assert by_user["ibv-reg-mr"].outcome == "error"
    assert by_user["vmsplice"].outcome == "ok"
    assert by_user["futex"].outcome == "ok" and by_user["futex"].errno in ("EAGAIN", "ETIMEDOUT")


def test_the_lab_cache_path_is_not_kept():
    doc = {"vmas": [{"file": "/home/u/.cache/drgn-p2p/bin/ab/holder", "ops": None},
                    {"file": "/home/u/.cache/drgn-p2p-other/x"}], "n": 3}
    assert gup.without_cache_path(doc, "/home/u/.cache/drgn-p2p") == {
        "vmas": [{"file": "${XDG_CACHE_HOME:-~/.cache}/drgn-p2p/bin/ab/holder", "ops": None},
                 {"file": "/home/u/.cache/drgn-p2p-other/x"}], "n": 3}
