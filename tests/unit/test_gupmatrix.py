# SPDX-License-Identifier: GPL-2.0-or-later
"""GUP predicted against observed (``drgn_p2p.lab.gupmatrix``): the join of a
ground-truth document's attempts with the predictions of its own audit."""

from drgn_p2p.lab import gupmatrix


def _pred(outcome, decided_by="check_vma_flags", migrates=False):
    return {"outcome": outcome, "decided_by": decided_by, "why": "because", "migrates": migrates}


def _doc():
    bar = {"pid": 10, "start": "0x1000", "end": "0x9000", "gup": [
        {"start": "0x1000", "end": "0x9000", "predictions": {
            "odirect-read": _pred("EFAULT"), "futex": _pred("EFAULT", "get_futex_key"),
            "proc-pid-mem": _pred("ok", "generic_access_phys")}}]}
    priv = {"pid": 11, "start": "0x10000", "end": "0x12000", "gup": [
        {"start": "0x10000", "end": "0x11000", "predictions": {
            "odirect-read": _pred("ok", "do_swap_page", migrates=True), "futex": _pred("EAGAIN", "futex_wait")}},
        {"start": "0x11000", "end": "0x12000", "predictions": {
            "odirect-read": _pred("EFAULT"), "futex": _pred("EAGAIN", "futex_wait")}}]}

    def attempt(user, addr, outcome, migrated=False):
        return {"user": user, "addr": hex(addr), "outcome": outcome, "migrated": migrated}

    return {"kernel": "7.2.13", "audit": {"vmas": [bar, priv]}, "mappings": [
        {"scenario": "pcibar", "expect": "pfnmap", "pid": 10, "attempts": [
            attempt("odirect-read", 0x1000, "EFAULT"), attempt("futex", 0x2000, "EFAULT"),
            attempt("proc-pid-mem", 0x3000, "EIO"), attempt("odirect-nvme-read", 0x4000, "EFAULT"),
            attempt("vmsplice", 0x5000, "error")]},
        {"scenario": "device-private", "expect": "device-private", "pid": 11, "attempts": [
            attempt("odirect-read", 0x10000, "ok", migrated=True), attempt("futex", 0x10000, "ok"),
            attempt("odirect-read", 0x11000, "ok")]},
    ]}


def test_each_attempt_meets_the_prediction_of_its_own_page():
    cs = {(c.scenario, c.user, c.addr): c for c in gupmatrix.cells(_doc())}
    # the NVMe user has no prediction anywhere, and an attempt that could not be set up observed nothing
    assert set(cs) == {("pcibar", "odirect-read", 0x1000), ("pcibar", "futex", 0x2000),
                       ("pcibar", "proc-pid-mem", 0x3000), ("device-private", "odirect-read", 0x10000),
                       ("device-private", "futex", 0x10000), ("device-private", "odirect-read", 0x11000)}
    assert cs["pcibar", "odirect-read", 0x1000].agree
    assert not cs["pcibar", "proc-pid-mem", 0x3000].agree
    migrated = cs["device-private", "odirect-read", 0x10000]
    assert migrated.agree and migrated.predicted_migrates and migrated.leaf_changed
    assert cs["device-private", "futex", 0x10000].agree  # EAGAIN predicted: the probe's "ok"
    # the second page of the VMA has its own segment
    assert not cs["device-private", "odirect-read", 0x11000].agree


def test_the_page_counts_and_lists_each_disagreement():
    md = gupmatrix.render_markdown([_doc()])
    assert "| `7.2.13` | 6 | 4 | 2 |" in md
    assert "**ok ≠ EIO**" in md
    assert "- `pcibar` × `proc-pid-mem` at 0x3000: predicted ok (`generic_access_phys`: because), observed EIO" in md
    assert "ok*" in md  # the migration, predicted and seen


def test_two_documents_of_one_kernel_are_one_table():
    """The lab's mappings and the broken ones (``gup-probe --broken``) of one kernel join in one table."""
    doc = _doc()
    broken = {"kernel": "7.2.13", "audit": {"vmas": [
        {"pid": 20, "start": "0x5000", "end": "0x6000", "gup": [{"start": "0x5000", "end": "0x6000", "predictions": {
            "odirect-read": _pred("oops", "gup_fast_pte_range")}}]}]},
        "mappings": [{"scenario": "broken:pfnmap-not-special", "expect": "broken", "pid": 20, "attempts": [
            {"user": "odirect-read", "addr": "0x5000", "outcome": "oops", "migrated": False}]}]}
    md = gupmatrix.render_markdown([doc, broken])
    assert "| `7.2.13` | 7 | 5 | 2 |" in md
    assert md.count("## `7.2.13`") == 1
    assert "| broken:pfnmap-not-special (broken) | oops |" in md
