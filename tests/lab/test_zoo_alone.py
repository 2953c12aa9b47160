# SPDX-License-Identifier: GPL-2.0-or-later
"""
Zoo shapes that need a boot of their own: a 1 GiB hugetlb page needs a free,
1 GiB-aligned GiB of RAM, which the lab's boots do not have (their RAM ends at
2.5 GiB, with [1, 2) GiB reserved for pmem and coherent memory) and cannot get
without moving RAM past the 32-bit PCI hole. Each is held alone in a guest
with the memory it needs, audited through QMP, a vmcore and /proc/kcore like
the main boot (tests/lab/test_audit.py), and recorded in the same zoo document.
"""

import sys

import pytest
from conftest import lab_document_path
from lab_prereq import tiered
from test_audit import KERNELS, ZOO_ENV, _check_expectation, audit_sources

from drgn_p2p.lab import proof, zoo
from drgn_p2p.lab.scenarios import ZOO

pytestmark = pytest.mark.lab

#: The zoo shapes with a memory need of their own.
ALONE = [s.name for s in ZOO if s.memory_mib]


#: The arm64 kernels (``arm64/NAME``), in the full tier: the 4K kernel holds a 1 GiB page as
#: a PUD leaf; the 16K kernel's plan skips the shape, naming CONFIG_ARM64_4K_PAGES. Checked
#: like the x86-64 ones, not recorded in the zoo document (the x86-64 lab kernels' table).
ARM64_KERNELS = ("arm64/newest", "arm64/newest-16k")


@pytest.mark.parametrize("kernel", tiered(KERNELS + ARM64_KERNELS, ("newest",)))
@pytest.mark.parametrize("shape", ALONE)
def test_zoo_shape_in_a_boot_of_its_own(request, lab_session, kernel: str, shape: str) -> None:
    """The shape is classified as its kernel code path makes it, and its guest passes
    ``audit --fail-on warning`` through every program source."""
    from drgn_p2p.lab.kernels import ensure_kernel
    from drgn_p2p.lab.vm import boot

    lab_session.close()  # at most one guest at a time
    arch, _, name = kernel.rpartition("/")
    lab_kernel = ensure_kernel(name, arch or "amd64")
    with boot(lab_kernel, scenarios=[shape]) as guest:
        if shape in guest.skipped:
            pytest.skip(f"{shape} on {lab_kernel.kver}: {guest.skipped[shape]}")
        audited = audit_sources(guest)
        docs, codes = audited.docs, audited.codes
        records, problems = [], []
        for m in audited.mappings(shape):
            vma = audited.vma(m)
            found = _check_expectation(m["expect"], vma, docs["qemu"])
            records.append((m, vma, found))
            problems += found
        if not arch:  # the zoo document (docs/zoo.md) is the x86-64 lab kernels'
            path = lab_document_path(request.config, ZOO_ENV, "zoo.json")
            try:
                existing = proof.load(path, zoo.SCHEMA)
            except (OSError, ValueError):
                existing = None
            clean = {source: zoo.clean_record(codes[source], docs[source]) for source in docs}
            shapes = [zoo.mapping_record(m, vma, docs["qemu"], found) for m, vma, found in records]
            proof.write(path, zoo.add_alone(existing, kernel, lab_kernel.kver, shape, shapes, clean))
            print(f"\nzoo: {shape} alone on {lab_kernel.kver} → {path}", file=sys.stderr)
        assert not problems, f"{shape} on {lab_kernel.kver}: {problems}"
        loud = {source: [f for f in doc["findings"] if f["severity"] != "info"] for source, doc in docs.items()}
        assert all(code == 0 for code in codes.values()) and not any(loud.values()), (codes, loud)
