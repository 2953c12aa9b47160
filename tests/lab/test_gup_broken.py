# SPDX-License-Identifier: GPL-2.0-or-later
"""
GUP on broken mappings: every GUP user of :data:`drgn_p2p.lab.gup.USERS`
tried on the mappings ``p2p_violate`` breaks on purpose, where the kernel may
oops (``drgn-p2p lab gup-probe --broken``, :mod:`drgn_p2p.lab.gupbroken`):
a boot goes on until an attempt kills its holder or the guest, and the next
boot takes the next user.

The test checks that the ground truth is whole and that the audit, from the
page tables alone and before any user ran, predicted it:
- every case the kernel can build was probed by every user its config allows,
  one attempt each, across the boots; a case it cannot build names the option;
- every outcome is in the vocabulary (``oops``, ``hang``, ``killed`` besides
  ``ok``, ``short`` and errno names);
- the control ``control-remap`` (remap_pfn_range() of a BAR) gets EFAULT from
  O_DIRECT both ways, as pcibar does (check_vma_flags(), mm/gup.c);
- every attempt meets a prediction of its own page, and agrees with it.

CI runs the mechanism on the newest kernel with a control, a case that
oopses GUP-fast (seven boots) and unreferenced P2PDMA pages; the full tier (``$DRGN_P2P_LAB_TIER=full``)
every case on every lab kernel, whose documents ``scripts/gup-observed``
joins into ``docs/gup-matrix.md``. The document goes to
``$DRGN_P2P_GUP_OUT/<release>-broken.json``, else the pytest cache.
"""

import sys

import pytest
from lab_prereq import full_tier, tiered
from test_gup_probe import ERRNO_NAMES, alone_on, write_document

from drgn_p2p.lab import gupmatrix
from drgn_p2p.lab.gup import OUTCOME_WORDS, SCHEMA, USERS
from drgn_p2p.lab.gupbroken import probe_broken

pytestmark = pytest.mark.lab

KERNELS = tiered(("newest", "6.12", "6.1"), ("newest",))

#: The CI slice: a control, a case whose GUP-fast walk meets a PFN without struct page (every
#: GUP-fast user oopses: six boots), and P2PDMA pages mapped with no reference (try_grab_folio()).
CI_CASES = ("control-remap", "pfnmap-not-special", "mixedmap-pages")

@pytest.mark.parametrize("name", KERNELS)
def test_gup_on_broken_mappings(lab_session, name: str, request: pytest.FixtureRequest) -> None:
    from test_kmod import _can_build

    _can_build()
    kernel = alone_on(lab_session, name)
    cases = None if full_tier() else CI_CASES
    observed = probe_broken(kernel, cases, log=lambda line: print(line, file=sys.stderr))
    doc, out = write_document(request.config, observed, "-broken")
    print(f"\ngup-broken: {observed.kernel}: {len(observed.mappings)} mappings in "
          f"{observed.timings['boots']:.0f} boots, {observed.timings['total']:.0f} s; document {out}",
          file=sys.stderr)

    assert doc["schema"] == SCHEMA
    assert not observed.problems, list(observed.problems)
    for user, why in observed.skipped_users.items():
        assert why.startswith("kernel lacks CONFIG_") or user.startswith("odirect-nvme"), (user, why)
    assert list(observed.users) == [u for u, _ in USERS if u not in observed.skipped_users]
    for kind, why in observed.skipped.items():
        assert why.startswith("kernel lacks CONFIG_"), (kind, why)

    # Every case held, every user once on it, across the boots.
    users_by_case = {}
    for m in observed.mappings:
        users_by_case.setdefault(m.scenario, []).extend(a.user for a in m.attempts)
        assert m.vma is not None, f"{m.scenario} at {m.start:#x}: not in the audit of pid {m.pid}"
        for a in m.attempts:
            assert a.outcome in OUTCOME_WORDS or a.outcome in ERRNO_NAMES, (m.scenario, a)
            assert m.start <= a.addr < m.start + m.length and a.addr % 4096 == 0, (m.scenario, a)
    held = {h["kind"] for h in observed.held}
    assert set(users_by_case) == held and held
    for kind, users in users_by_case.items():
        assert sorted(users) == sorted(observed.users), kind

    control = {a.user: a.outcome for m in observed.mappings if m.scenario == "broken:control-remap"
               for a in m.attempts if a.user in ("odirect-read", "odirect-write")}
    assert control == {"odirect-read": "EFAULT", "odirect-write": "EFAULT"}

    cells = gupmatrix.cells(doc)
    assert {c.scenario for c in cells} == held
    wrong = [f"{c.scenario} × {c.user} at {c.addr:#x}: predicted {c.predicted} ({c.decided_by}: {c.why}), "
             f"observed {c.observed}" for c in cells if not c.agree]
    assert not wrong, "\n".join(wrong)
