# SPDX-License-Identifier: GPL-2.0-or-later
"""The broken-mapping GUP tier's bookkeeping (``drgn_p2p.lab.gupbroken``):
what an attempt that killed its holder is recorded as, and the one audit the
boots' audits make."""

import pytest

from drgn_p2p.lab import gupbroken
from drgn_p2p.lab.gup import OUTCOME_WORDS


def test_an_attempt_that_killed_its_holder_is_what_the_kernel_log_says():
    oops = ["BUG: unable to handle page fault for address: ffffea0e00000000",
            "Oops: 0000 [#1] SMP NOPTI", "RIP: 0010:gup_fast_pte_range+0x10a/0x3a0"]
    a = gupbroken.died_attempt("odirect-read", 0x5000_0000_0000, oops, hung=False)
    assert (a.user, a.addr, a.outcome, a.dmesg) == ("odirect-read", 0x5000_0000_0000, "oops", tuple(oops))
    assert gupbroken.died_attempt("futex", 0, ["holder[97]: segfault"], hung=False).outcome == "killed"
    assert gupbroken.died_attempt("futex", 0, [], hung=True).outcome == "hang"
    assert gupbroken.died_attempt("futex", 0, ["Oops: 0000 [#1] SMP NOPTI"], hung=True).outcome == "oops"
    assert gupbroken.died_attempt("futex", 0, ["WARNING: CPU: 1 PID: 97 at mm/memory.c"], hung=True).outcome == "hang"
    assert {"oops", "killed", "hang"} <= set(OUTCOME_WORDS)


def test_the_boots_audits_make_one_document():
    a = {"schema": "drgn-p2p/audit/1", "kernel": {"release": "7.2"}, "vmas": [{"pid": 1}], "findings": [1],
         "faults": []}
    b = {"schema": "drgn-p2p/audit/1", "kernel": {"release": "7.2"}, "vmas": [{"pid": 1}, {"pid": 2}],
         "findings": [], "faults": [3]}
    merged = gupbroken.merge_audits([a, b])
    assert merged["kernel"] == {"release": "7.2"}
    assert merged["vmas"] == [{"pid": 1}, {"pid": 1}, {"pid": 2}]
    assert (merged["findings"], merged["faults"]) == ([1], [3])
    assert a["vmas"] == [{"pid": 1}]  # the inputs are left alone


def test_each_slot_is_aligned_for_every_case():
    from drgn_p2p.lab.kmod import VIOLATE_CASES

    for slot in range(3):
        at = gupbroken.ADDRESS_BASE + slot * gupbroken.ADDRESS_STRIDE
        assert all(at % c.length == 0 for c in VIOLATE_CASES if c.huge)
        assert at + gupbroken.ADDRESS_STRIDE < 1 << 47


def test_a_bad_page_report_is_not_an_oops():
    """vm_normal_page()'s "Bad page map" reports the entry and returns: the system call goes on."""
    from drgn_p2p.lab.gup import attempt_of, outcome_of

    bad = ["BUG: Bad page map in process holder  pte:80000000febf0037", "RIP: 0033:0x44829d"]
    assert outcome_of("EFAULT", 0, 4096, bad, None) == "EFAULT"
    assert outcome_of(None, 0, 4096, bad + ["Oops: 0000 [#1] SMP NOPTI"], None) == "oops"
    a = attempt_of({"user": "odirect-read", "addr": "0x1000", "errno": "EFAULT", "ret": -1, "bytes": 0,
                    "want": 4096, "leaf_before": "0x0", "leaf_after": "0x0", "dmesg": bad, "why": None})
    assert (a.outcome, a.bad_page, a.to_json()["bad_page"]) == ("EFAULT", True, True)
    assert gupbroken.died_attempt("odirect-read", 0, bad, hung=False).outcome == "killed"


def test_a_warn_is_not_an_oops():
    """try_grab_folio()'s WARN_ON_ONCE(refcount <= 0) returns -ENOMEM: the system call goes on."""
    from drgn_p2p.lab.gup import attempt_of

    warn = ["WARNING: CPU: 1 PID: 211 at mm/gup.c:143 try_grab_folio+0x1a/0x1c0"]
    a = attempt_of({"user": "odirect-read", "addr": "0x1000", "errno": "ENOMEM", "ret": -1, "bytes": 0,
                    "want": 4096, "leaf_before": "0x0", "leaf_after": "0x0", "dmesg": warn, "why": None})
    assert (a.outcome, a.warned, a.bad_page, a.to_json()["warned"]) == ("ENOMEM", True, False, True)


def test_a_boot_that_never_got_ready_is_booted_again(monkeypatch):
    import pytest

    from drgn_p2p.lab import LabError

    calls = []

    def one_boot(kernel, pending, slot, *args):
        calls.append(len(pending))
        if len(calls) <= 2:
            raise gupbroken._BootFailed("timed out before the guest's stage 2")
        return [], slot, "7.2.13+deb14-amd64"

    monkeypatch.setattr(gupbroken, "_one_boot", one_boot)
    monkeypatch.setattr(gupbroken, "build_module", lambda kernel, name: "p2p_violate.ko")
    monkeypatch.setattr(gupbroken, "holder_binary", lambda: "holder")
    monkeypatch.setattr(gupbroken, "kernel_config", lambda kernel: {"CONFIG_ZONE_DEVICE": "y"})
    observed = gupbroken.probe_broken(object(), ["control-remap"])
    assert calls == [1, 1, 1] and observed.timings["boots"] == 3 and observed.kernel == "7.2.13+deb14-amd64"

    def never_ready(kernel, pending, slot, *args):
        calls.append(len(pending))
        raise gupbroken._BootFailed("no stage 2")

    calls.clear()
    monkeypatch.setattr(gupbroken, "_one_boot", never_ready)
    with pytest.raises(LabError, match="three boots in a row failed"):
        gupbroken.probe_broken(object(), ["control-remap"])
    assert calls == [1, 1, 1]


def test_the_merged_audit_keeps_the_held_mappings_vmas_and_findings():
    vma = lambda pid, start, end: {"pid": pid, "start": hex(start), "end": hex(end)}  # noqa: E731
    a = {"vmas": [vma(1, 0x1000, 0x3000), vma(1, 0x400000, 0x401000)],
         "findings": [{"pid": 1, "vma": vma(1, 0x1000, 0x3000)}, {"pid": 1, "vma": vma(1, 0x400000, 0x401000)}]}
    b = {"vmas": [vma(1, 0x1000, 0x3000), vma(2, 0x1000, 0x3000)], "findings": []}
    held = [{"kind": "broken:x", "pid": 1, "addr": "0x2000"}, {"kind": "broken:y", "pid": 2, "addr": 0x1000}]
    merged = gupbroken.merge_audits([a, b], held)
    assert merged["vmas"] == [vma(1, 0x1000, 0x3000), vma(1, 0x1000, 0x3000), vma(2, 0x1000, 0x3000)]
    assert merged["findings"] == [{"pid": 1, "vma": vma(1, 0x1000, 0x3000)}]


@pytest.mark.parametrize(
    "code,out,status",
    [
        (0, "gup: broken:x done\n", "done"),
        (0, "gup: broken:x oopsed\n", "oopsed"),
        (0, "some noise\ngup: broken:x timeout\n", "timeout"),
        # The guest stopped the script (timeout(1): 124, then SIGKILL: 137) before it said anything:
        # the user was stuck in the kernel.
        (124, "", "timeout"),
        (137, "", "timeout"),
        # The script ended without a word: the holder took the shell with it.
        (0, "", "died"),
        (1, "gup: broken:y done\n", "died"),  # another case's line says nothing of this one
    ],
)
def test_how_a_probe_ended(code, out, status):
    assert gupbroken.probe_status("broken:x", code, out) == status
