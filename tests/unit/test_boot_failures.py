# SPDX-License-Identifier: GPL-2.0-or-later
"""How the lab boots when a guest dies before it holds its mappings, with a stand-in
for ``qemu-system-x86_64`` that plays back a real guest's console: a death
is explained by its first telling lines (not only the console's tail), and a
boot that dies is retried once, said and counted."""

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from drgn_p2p.lab import LabError
from drgn_p2p.lab.vm import start

#: A TCG guest that panicked in early boot (the flake the retry is for).
FLAKE = """\
[    1.287304] Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP NOPTI
[    1.290122] RIP: 0010:sched_clock_cpu+0x4b/0x1c0
[    1.301877] Kernel panic - not syncing: Fatal exception in interrupt
"""
#: A guest whose module tree had no modules.dep: the lab's init could not mount the host root.
NO_ROOT = "qp-init: mounting the host root failed\nqp-init: overlay mount failed\n" + "".join(
    f"[    2.{i:06d}]  ? some_function+0x{i:x}/0x100\n" for i in range(40)
) + "[    2.400000] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n" + "".join(
    f"[    2.5{i:05d}]  trace line {i}\n" for i in range(30)
)

FAKE_QEMU = """#!{python}
import os, pathlib, sys, time
args = sys.argv[1:]
console = next(a.split("path=", 1)[1] for a in args if a.startswith("file,id=ser0,"))
out = pathlib.Path(next(a.split("path=", 1)[1].split(",")[0] for a in args if a.startswith("local,id=out,")))
state = pathlib.Path(os.environ["FAKE_QEMU_STATE"])
boots = len(state.read_text()) if state.exists() else 0
state.write_text("x" * (boots + 1))
deaths = int(os.environ["FAKE_QEMU_DEATHS"])
if boots < deaths:
    if os.environ.get("FAKE_QEMU_IN_STAGE2"):
        (out / "stage2").write_text("4.0")
    pathlib.Path(console).write_text(pathlib.Path(os.environ["FAKE_QEMU_CONSOLE"]).read_text())
    sys.exit(0)  # -no-reboot: the guest's panic reboot ends QEMU
for name, text in (("stage2", "4.0"), ("mappings.json", "[]"), ("skipped.json", "{{}}"), ("ready", "5.0")):
    (out / name).write_text(text)
while not (out / "release").exists():
    time.sleep(0.05)
"""


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qemu = bin_dir / "qemu-system-x86_64"
    qemu.write_text(FAKE_QEMU.format(python=sys.executable))
    qemu.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DRGN_P2P_LAB_ACCEL", "tcg")
    monkeypatch.setenv("FAKE_QEMU_STATE", str(tmp_path / "boots"))
    kernel = SimpleNamespace(name="user", kver="7.2.0-fake", vmlinuz=tmp_path / "vmlinuz", vmlinux=None,
                             config={}, modules_dir=None, dir=tmp_path, cc=None)

    def boot(console: str, deaths: int, in_stage2: bool = False):
        (tmp_path / "console").write_text(console)
        monkeypatch.setenv("FAKE_QEMU_IN_STAGE2", "1" if in_stage2 else "")
        monkeypatch.setenv("FAKE_QEMU_CONSOLE", str(tmp_path / "console"))
        monkeypatch.setenv("FAKE_QEMU_DEATHS", str(deaths))
        return start(kernel, ["anon"], timeout=60)

    return boot


def test_a_boot_that_dies_before_stage_2_is_retried_once_and_counted(fake_qemu, capfd) -> None:
    guest = fake_qemu(FLAKE, deaths=1)
    try:
        assert guest.alive()
        assert guest.boot_retries == ["[    1.287304] Oops: general protection fault, probably for non-canonical "
                                      "address 0xdead000000000100: 0000 [#1] SMP NOPTI"]
    finally:
        guest.close()
    err = capfd.readouterr().err
    assert "died before its stage 2 ([    1.287304] Oops: general protection fault" in err
    assert "booting it again" in err


def test_a_guest_that_keeps_dying_is_explained_by_its_first_telling_lines(fake_qemu, capfd) -> None:
    with pytest.raises(LabError) as info:
        fake_qemu(NO_ROOT, deaths=5)
    text = str(info.value)
    assert text.startswith("QEMU exited with status 0 before the guest's stage 2")
    assert "(booted 2 times)" in text
    assert text.index("qp-init: mounting the host root failed") < text.index("Attempted to kill init")
    assert "trace line 29" in text  # and the tail
    assert capfd.readouterr().err.count("booting it again") == 1


#: A TCG guest that oopsed while its stage 2 set the scenarios up (seen on 6.12).
STAGE2_FLAKE = """\
[   41.200113] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[   41.200950] RIP: 0010:schedule_idle+0x1e/0x40
[   41.215602] Kernel panic - not syncing: Attempted to kill the idle task!
"""


def test_a_guest_that_dies_in_its_stage_2_is_retried_once_and_counted(fake_qemu, capfd) -> None:
    guest = fake_qemu(STAGE2_FLAKE, deaths=1, in_stage2=True)
    try:
        assert guest.alive()
        assert guest.boot_retries == ["[   41.200113] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI"]
    finally:
        guest.close()
    err = capfd.readouterr().err
    assert "died before it held its mappings ([   41.200113] Oops: int3" in err


def test_a_guest_that_dies_in_its_stage_2_every_time_says_so(fake_qemu) -> None:
    with pytest.raises(LabError) as info:
        fake_qemu(STAGE2_FLAKE, deaths=5, in_stage2=True)
    text = str(info.value)
    assert text.startswith("QEMU exited with status 0 before the guest held its mappings")
    assert "(booted 2 times)" in text and "schedule_idle" in text
