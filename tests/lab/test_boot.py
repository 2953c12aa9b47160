# SPDX-License-Identifier: GPL-2.0-or-later
"""The lab itself: boot, scenarios, drgn over QMP, commands, dumps."""

import gc
import shlex
import sys
from types import SimpleNamespace

import pytest
from lab_prereq import check_setup

from drgn_p2p.lab import scenarios
from drgn_p2p.lab.vm import boot

drgn = pytest.importorskip("drgn")


def _read_init_comm(prog: "drgn.Program") -> bytes:
    """Return init_task.comm."""
    return prog["init_task"].comm.string_()


def test_plan_follows_config(tmp_path):
    """Scenarios the config cannot run are skipped with the missing options."""
    kernel = SimpleNamespace(dir=tmp_path, config={"CONFIG_PCI": "y", "CONFIG_TRANSPARENT_HUGEPAGE": "y"})
    p = scenarios.plan(kernel, test_hmm=None)
    ran = {s.name for s in p.scenarios}
    assert {"anon", "thp", "pcibar", "zero-page", "protnone"} <= ran
    assert "CONFIG_PCI_P2PDMA" in p.skipped["p2pdma"]
    assert "CONFIG_DEVICE_PRIVATE" in p.skipped["device-private"]
    assert ran.isdisjoint(p.skipped)
    assert ran | set(p.skipped) == set(scenarios.names())
    with pytest.raises(Exception, match="unknown scenario"):
        scenarios.plan(kernel, ["nope"])


@pytest.mark.lab
def test_every_scenario_accounted_for(guest_newest):
    """Each scenario is held (in the manifest) or skipped with a reason; none failed."""
    kinds = {m["kind"] for m in guest_newest.mappings}
    for name in scenarios.names():
        assert name in kinds or guest_newest.skipped.get(name), name
    failed = {k: v for k, v in guest_newest.skipped.items() if v.startswith("error:")}
    assert not failed, failed
    assert {"anon", "fsdax"} <= kinds
    for m in guest_newest.mappings:
        assert m["pid"] > 1 and m["addr"] > 0 and m["len"] > 0
        assert m["expect"].startswith(scenarios.expect_of(m["kind"]))


@pytest.mark.lab
def test_drgn_attaches_over_qmp(guest_newest):
    """drgn reads the running guest through the drgn QMP socket."""
    prog = drgn.Program()
    prog.set_qemu_qmp(guest_newest.qmp_path)
    prog.load_debug_info([str(guest_newest.kernel.vmlinux)])
    try:
        assert _read_init_comm(prog) == b"swapper/0"
        assert prog["init_uts_ns"].name.release.string_().decode() == guest_newest.kernel.kver
    finally:
        del prog
        gc.collect()  # closes the QMP connection; QEMU serves one client per socket


@pytest.mark.lab
def test_run_in_guest(guest_newest):
    """Commands run in the guest and report status and output."""
    rc, out = guest_newest.run("uname -r; echo hello >&2")
    assert rc == 0
    assert out.split() == [guest_newest.kernel.kver, "hello"]
    assert guest_newest.run("exit 3")[0] == 3
    rc, out = guest_newest.run("cat /proc/$(awk '$1==\"anon\"{print $2}' /out/manifest.txt)/comm")
    assert (rc, out.strip()) == (0, "holder")


@pytest.mark.lab
def test_live_drgn_in_guest(guest_newest):
    """The host's Python and drgn run inside the guest, live on /proc/kcore."""
    script = (
        "import drgn; prog = drgn.Program(); prog.set_kernel(); "
        f"prog.load_debug_info([{str(guest_newest.kernel.vmlinux)!r}]); "
        "print(prog['init_task'].comm.string_().decode())"
    )
    rc, out = guest_newest.run(f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}", timeout=120)
    assert (rc, out.splitlines()[-1:]) == (0, ["swapper/0"]), out


@pytest.mark.lab
def test_kdump_dump(guest_newest, tmp_path):
    """A kdump-zlib vmcore taken over the control socket opens in drgn."""
    path = guest_newest.dump(tmp_path / "vmcore", fmt="kdump-zlib")
    assert path.stat().st_size > 1 << 20
    platform = drgn.Platform(drgn.Architecture.X86_64, drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN)
    prog = drgn.Program(platform)
    prog.set_core_dump(str(path))
    prog.load_debug_info([str(guest_newest.kernel.vmlinux)])
    assert _read_init_comm(prog) == b"swapper/0"


@pytest.mark.lab
def test_four_level_paging(guest_newest):
    """la57=False boots with 4-level paging (-cpu max,-la57)."""
    with boot(guest_newest.kernel, scenarios=["anon"], la57=False, memory="1G") as guest:
        check_setup(guest)
        assert [m["kind"] for m in guest.mappings] == ["anon"]
        rc, out = guest.run("grep -cw la57 /proc/cpuinfo")
        assert out.strip() == "0"
