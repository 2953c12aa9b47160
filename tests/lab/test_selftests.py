# SPDX-License-Identifier: GPL-2.0-or-later
"""
The kernel's own mm selftests as workloads (``drgn_p2p/lab/selftests.py``).

Each lab kernel's ``tools/testing/selftests/mm`` programs, built from its own
source package, run in the guest that holds every scenario, while the guest is
audited over and over through QMP and live ``/proc/kcore``. Every audit must
exit 0 (no finding at warning or above, no error), and what the tests map must
be classified: no garbage entry, no page kind the audit cannot name. A selftest
that fails on its own is the kernel's business: it is reported (in the
selftests document, rendered by ``scripts/selftests-report``), not asserted.

The tests change the guest (huge pages, KSM, THP splits), so the guest is taken
out of the pool and closed afterwards.
"""

import sys

import pytest
from conftest import lab_document_path
from lab_prereq import full_tier, tiered

from drgn_p2p.lab import proof
from drgn_p2p.lab.selftests import SCHEMA, kernel_record, merge, run_selftests

pytestmark = pytest.mark.lab

#: The core tier on every lab kernel in the full tier; on the newest in CI.
KERNELS = tiered(("newest", "6.12", "6.1"), ("newest",))

#: Where the selftests document goes (default: the pytest cache).
SELFTESTS_ENV = "DRGN_P2P_SELFTESTS_OUT"


#: Page kinds an audit can name (docs/json.md); a selftest's pages must be one of them.
_KINDS = {"ram", "zero-page", "huge-zero", "fsdax", "devdax", "device-generic", "p2pdma", "device-private",
          "device-coherent", "no-memmap", "none"}
#: Non-present entry kinds that are a selftest's legitimate doing.
_ENTRIES = {"protnone", "swap", "migration", "device-private", "device-exclusive", "hwpoison", "marker",
            "swapin-error"}


@pytest.mark.parametrize("name", KERNELS)
def test_selftests_audited_clean(name, lab_session, request) -> None:
    guest = lab_session.take(name)
    try:
        boot = guest.timings.get("ready", 0.0)
        # the full selftest tier (half an hour and more under TCG) only in the lab's full tier
        tier = "full" if name == "newest" and full_tier() else "core"
        result = run_selftests(guest, tier, on_audit=lambda a: print(
            f"\naudit via {a.via} at {a.at:.0f} s during {a.running}: exit {a.exit_code} {a.error}"
                f"{f' ({a.withdrawn} findings withdrawn)' if a.withdrawn else ''}",
            file=sys.stderr))
    finally:
        guest.close()
    path = lab_document_path(request.config, SELFTESTS_ENV, "selftests.json")
    try:
        existing = proof.load(path, SCHEMA)
    except (OSError, ValueError):
        existing = None
    proof.write(path, merge(existing, {name: kernel_record(result, name, boot)}))
    print(f"\nselftests: {result.kver} → {path}; " + ", ".join(
        f"{t.name} {t.verdict}({t.status})" for t in result.tests), file=sys.stderr)

    assert result.tests, f"no selftest ran: {result.skipped}"
    vias = {a.via for a in result.audits}
    assert vias == {"qemu", "live"}, vias
    # Audited during the run, not only after it: at least one audit per via saw a test running.
    assert {a.via for a in result.audits if a.running} == {"qemu", "live"}
    bad = [(a.via, a.at, a.exit_code, a.error, [f for f in a.findings if f[1] != "info"])
           for a in result.audits if a.exit_code != 0]
    assert not bad, bad
    for comm, seen in result.mapped.items():
        assert set(seen["pages"]) <= _KINDS, (comm, seen)
        assert set(seen["entries"]) <= _ENTRIES, (comm, seen)
    assert result.mapped, "the audits saw nothing the selftests mapped"
