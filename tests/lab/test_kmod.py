# SPDX-License-Identifier: GPL-2.0-or-later
"""
Lab modules: p2p_violate and test_hmm built per lab kernel, and (on the
newest kernel) loaded in a guest where violate_holder maps every case; the
page-table bits of each case are then read back over QMP.
"""

import gc
import os
import re
import shutil
import time
from typing import Dict, List

import pytest
from lab_prereq import check_setup, missing

from drgn_p2p.lab import kmod
from drgn_p2p.lab.kmod import HeldCase, ModuleUnsupported

KERNELS = ("newest", "6.12", "6.1")


# ---------------------------------------------------------------- no kernel needed


def test_case_table_matches_header():
    """The Python case table and the one the module and holder compile agree."""
    header = (kmod.SOURCE_DIR / "p2p_violate.h").read_text()
    assert kmod.parse_case_table(header) == list(kmod.VIOLATE_CASES)
    assert [c.pgoff for c in kmod.VIOLATE_CASES] == list(range(len(kmod.VIOLATE_CASES)))
    assert {c.name for c in kmod.VIOLATE_CASES if c.control} == {
        "control-remap", "control-fault-pfn", "control-huge-pfn"}


def test_parse_manifest():
    text = (
        "control-remap 412 0x7f0000000000 16384\n"
        "devmap-on-ram 412 skip not expressible on this kernel (EOPNOTSUPP)\n"
        "\n"
    )
    assert kmod.parse_manifest(text) == [
        HeldCase("control-remap", 412, 0x7F0000000000, 16384),
        HeldCase("devmap-on-ram", 412, None, None, "not expressible on this kernel (EOPNOTSUPP)"),
    ]
    with pytest.raises(kmod.LabError):
        kmod.parse_manifest("control-remap 412\n")


def test_module_supported_follows_config():
    from types import SimpleNamespace

    old = SimpleNamespace(kver="6.1.0-50-amd64", config={"CONFIG_MODULES": "y"})
    new = SimpleNamespace(kver="7.2.13+deb14-amd64", config={"CONFIG_MODULES": "y", "CONFIG_DEVICE_PRIVATE": "y"})
    assert "CONFIG_DEVICE_PRIVATE" in kmod.module_supported(old, "test_hmm")
    assert kmod.module_supported(new, "test_hmm") is None
    assert kmod.module_supported(old, "p2p_violate") is None
    with pytest.raises(ModuleUnsupported, match="CONFIG_DEVICE_PRIVATE"):
        kmod.build_module(old, "test_hmm")


def test_holder_builds():
    if shutil.which("cc") is None:
        missing("no host C compiler")
    holder = kmod.build_holder()
    assert holder.is_file() and os.access(holder, os.X_OK)


# ---------------------------------------------------------------- builds per kernel


def _can_build() -> None:
    if os.geteuid() != 0:
        missing("building lab modules needs root")
    for tool in ("debootstrap", "modinfo"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed")


def _kernel(name: str):
    from drgn_p2p.lab.kernels import ensure_kernel

    return ensure_kernel(name)


@pytest.mark.lab
@pytest.mark.parametrize("name", KERNELS)
def test_p2p_violate_builds(name):
    """p2p_violate builds for each lab kernel with the kernel's own vermagic."""
    _can_build()
    kernel = _kernel(name)
    timings: Dict[str, float] = {}
    start = time.monotonic()
    ko = kmod.build_module(kernel, "p2p_violate", timings)
    cold = time.monotonic() - start
    assert kmod.vermagic(ko) == kmod.kernel_vermagic(kernel)
    start = time.monotonic()
    assert kmod.build_module(kernel, "p2p_violate") == ko
    warm = time.monotonic() - start
    print(f"\np2p_violate {kernel.kver}: first call {cold:.1f} s {timings}, cached {warm:.2f} s")
    assert warm < 5


@pytest.mark.lab
@pytest.mark.parametrize("name", KERNELS)
def test_test_hmm_builds_where_device_private(name):
    """test_hmm builds from the kernel's own source where DEVICE_PRIVATE=y, else says why not."""
    _can_build()
    kernel = _kernel(name)
    if kernel.config.get("CONFIG_DEVICE_PRIVATE") != "y":
        with pytest.raises(ModuleUnsupported, match="CONFIG_DEVICE_PRIVATE"):
            kmod.build_module(kernel, "test_hmm")
        return
    ko = kmod.build_module(kernel, "test_hmm")
    assert kmod.vermagic(ko) == kmod.kernel_vermagic(kernel)


# ---------------------------------------------------------------- in a guest


#: Bits of an x86-64 leaf and VMA flags the cases are about.
_PRESENT, _PSE, _PROTNONE, _SPECIAL = 1 << 0, 1 << 7, 1 << 8, 1 << 9
_PFNMAP, _IO, _MIXEDMAP = 0x400, 0x4000, 0x10000000

#: case -> (VM_PFNMAP|VM_MIXEDMAP wanted in the VMA, huge leaf, special bit, devmap bit).
#: "dax": the bit as this kernel's DAX PTEs carry it (set with a devmap bit, clear without).
_EXPECT = {
    "control-remap": (_PFNMAP, False, True, False),
    "control-fault-pfn": (_PFNMAP, False, True, False),
    "control-huge-pfn": (_PFNMAP, True, True, False),
    "nomemmap-no-pfnmap": (0, False, True, False),
    "pfnmap-not-special": (_PFNMAP, False, False, False),
    "huge-pfn-not-special": (_PFNMAP, True, False, False),
    "special-on-ram": (0, False, True, False),
    "mixedmap-pages": (_MIXEDMAP, False, False, False),
    "devmap-on-ram": (_MIXEDMAP, False, True, True),
    "pfnmap-ram-not-special": (_PFNMAP, False, False, False),
    "devmap-not-special": (0, False, False, True),
    "p2pdma-special": (_MIXEDMAP, False, True, False),
    "p2pdma-no-mixedmap": (0, False, False, False),
    "devdax-special": (0, False, True, False),
    "devdax-in-pfnmap": (_PFNMAP, False, "dax", "dax"),
    "coherent-in-pfnmap": (_PFNMAP, False, True, False),
    "private-present": (_PFNMAP, False, True, False),
}

#: Cases held as non-present PTEs: case -> (VM_PFNMAP|VM_MIXEDMAP wanted, the
#: SwapTypes field naming the entry's type, the swap offset wanted or None,
#: what the PFN in the offset must be: the page kind, or None for an entry
#: without a PFN; "p2pdma+N": the module's P2PDMA chunk's page N + index).
_NONPRESENT = {
    "migration-to-p2pdma": (_PFNMAP, "migration_read", None, "p2pdma+8"),
    "unknown-marker": (_PFNMAP, "pte_marker", 0x40, None),
    "private-entry-to-ram": (_PFNMAP, "device_write", None, "ram"),
    "exclusive-to-p2pdma": (_PFNMAP, "device_exclusive_write", None, "p2pdma+12"),
}


#: Kernel messages that mean a mapping was met or torn down in a bad state.
_COMPLAINT = re.compile(
    r"bad page|bad rss|BUG|WARNING|Oops|general protection|unrecognized swap entry|leaking",
    re.IGNORECASE,
)


def _swap_fields(raw: int) -> tuple:
    """(type, offset) of an x86-64 swap-format PTE: type in bits 59-63, offset inverted in bits 9-58."""
    return raw >> 59, (~raw >> 9) & ((1 << 50) - 1)


def _swap_pfn(raw: int, layout) -> int:
    """The PFN of a PFN-carrying swap entry: the offset's low SWP_PFN_BITS."""
    return _swap_fields(raw)[1] & ((1 << layout.swap.pfn_bits) - 1)


def _leaves(guest, held: List[HeldCase]) -> Dict[str, tuple]:
    """Read each held case's VMA flags and leaves from the guest over QMP."""
    pytest.importorskip("drgn")
    from drgn_p2p.classify import Classifier
    from drgn_p2p.layout import read_layout
    from drgn_p2p.target import open_program
    from drgn_p2p.tasks import for_each_process
    from drgn_p2p.walk import PageTableWalker, process_vmas

    prog = open_program(qemu=guest.qmp_path, symbols=[str(guest.kernel.vmlinux)])
    try:
        layout = read_layout(prog)
        classifier = Classifier(prog, layout)
        (process,) = list(for_each_process(prog, pids=[held[0].pid]))
        walker = PageTableWalker.for_mm(prog, layout, process.mm)
        result = {}
        for h in held:
            if h.skip:
                continue
            (vma,) = list(process_vmas(prog, process, h.addr, h.addr + h.length))
            leaves = [raw for _, _, raw in walker.walk(h.addr, h.addr + h.length)]
            # What the PFN of each PFN-carrying non-present entry is.
            carries_pfn = h.case in _NONPRESENT and _NONPRESENT[h.case][3] is not None
            kinds = [classifier.classify(_swap_pfn(raw, layout)).kind.value for raw in leaves if carries_pfn]
            result[h.case] = (vma, leaves, layout, kinds)
        return result
    finally:
        del prog
        gc.collect()  # closes the QMP connection


def _expected_skips(config: Dict[str, str]) -> set:
    """
    Cases a kernel cannot express (:meth:`kmod.ViolateCase.unsupported`): no
    correct huge PFN leaf before 6.12, no devmap bit since 6.17, no
    device-private page without CONFIG_DEVICE_PRIVATE.
    """
    return {c.name for c in kmod.VIOLATE_CASES if c.unsupported(config)}


@pytest.mark.lab
@pytest.mark.parametrize("name", KERNELS)
def test_violations_in_guest(name):
    """
    Boot a lab kernel with an ivshmem BAR (and test_hmm where DEVICE_PRIVATE
    exists), load p2p_violate, hold every case, and check each case's bits:
    the wrong ones are wrong in exactly the intended way and the controls are
    right. Then SIGTERM the holder: its restore leaves no "Bad page map".
    """
    _can_build()
    if shutil.which("qemu-system-x86_64") is None:
        missing("qemu-system-x86_64 is not installed")
    from drgn_p2p.lab.vm import boot

    kernel = _kernel(name)
    scenarios = ["pcibar"]
    hmm = None
    if kmod.module_supported(kernel, "test_hmm") is None:
        hmm = kmod.build_module(kernel, "test_hmm")
        scenarios.append("device-private")
    violate = kmod.build_module(kernel, "p2p_violate")
    holder = kmod.build_holder()
    with boot(kernel, scenarios=scenarios, test_hmm=hmm) as guest:
        check_setup(guest)
        kinds = {m["kind"] for m in guest.mappings}
        assert set(scenarios) <= kinds, guest.skipped  # test_hmm loaded and used where built
        rc, out = guest.run("dmesg | wc -l")
        assert rc == 0, out
        before = int(out.split()[-1])
        params = "/sys/module/p2p_violate/parameters"
        rc, out = guest.run(f"insmod {violate} && cat {params}/bar_source {params}/devmem_phys")
        assert rc == 0, out
        assert out.startswith("pci "), out  # found the ivshmem BAR by itself
        devmem_pfn = int(out.split()[-1]) >> 12  # the P2PDMA chunk is the first
        rc, out = guest.run(
            f"setsid {holder} /out/violate.txt </dev/null >/out/violate.log 2>&1 &"
            " for i in $(seq 100); do [ -e /out/violate.txt ] && break; sleep 0.1; done;"
            " cat /out/violate.txt"
        )
        assert rc == 0, out
        print(f"\n{kernel.kver}:\n{out}")
        held = kmod.parse_manifest((guest.out_dir / "violate.txt").read_text())
        assert [h.case for h in held] == [c.name for c in kmod.VIOLATE_CASES]
        skipped = {h.case: h.skip for h in held if h.skip}
        assert set(skipped) == _expected_skips(kernel.config), skipped
        assert all("EOPNOTSUPP" in why for why in skipped.values()), skipped

        seen = _leaves(guest, held)
        for case, (vma, leaves, layout, kinds) in seen.items():
            if case in _NONPRESENT:
                kind, type_field, offset, target = _NONPRESENT[case]
                assert vma.flags & (_PFNMAP | _MIXEDMAP) == kind, (case, hex(vma.flags))
                assert vma.flags & _IO, (case, hex(vma.flags))
                assert vma.ops == "p2pv_vm_ops", (case, vma.ops)
                length = next(h.length for h in held if h.case == case)
                assert len(leaves) == length // 4096, (case, [hex(x) for x in leaves])
                print(f"  {case:22} vm_flags={vma.flags:#x} entries={' '.join(hex(x) for x in leaves)} {kinds}")
                pfns = [_swap_pfn(raw, layout) for raw in leaves]
                for i, raw in enumerate(leaves):
                    assert not raw & (_PRESENT | _PROTNONE), (case, hex(raw))
                    stype, soff = _swap_fields(raw)
                    assert getattr(layout.swap, type_field) is not None, (case, type_field)
                    assert stype == getattr(layout.swap, type_field), (case, hex(raw), stype)
                    assert offset is None or soff == offset, (case, hex(raw), hex(soff))
                    if target is None:
                        continue
                    assert soff == pfns[i], (case, hex(raw))  # nothing above the PFN bits
                    if target.startswith("p2pdma+"):
                        assert kinds[i] == "p2pdma", (case, hex(raw), kinds[i])
                        assert pfns[i] == devmem_pfn + int(target[7:]) + i, (case, hex(raw), hex(devmem_pfn))
                    else:
                        assert kinds[i] == target, (case, hex(raw), kinds[i])
                assert target is None or len(set(pfns)) == len(pfns), (case, [hex(p) for p in pfns])
                continue
            kind, huge, special, devmap_bit = _EXPECT[case]
            assert not kinds, (case, kinds)
            if special == "dax":
                special = devmap_bit = layout.devmap_bit is not None
            assert vma.flags & (_PFNMAP | _MIXEDMAP) == kind, (case, hex(vma.flags))
            assert vma.ops == "p2pv_vm_ops" and "p2p_violate" in (vma.file or ""), (case, vma.ops, vma.file)
            length = next(h.length for h in held if h.case == case)
            assert len(leaves) == (1 if huge else length // 4096), (case, [hex(x) for x in leaves])
            print(f"  {case:22} vm_flags={vma.flags:#x} leaves={' '.join(hex(x) for x in leaves)}")
            for raw in leaves:
                assert raw & _PRESENT, (case, hex(raw))
                assert bool(raw & _PSE) == huge, (case, hex(raw))
                assert bool(raw & _SPECIAL) == special, (case, hex(raw))
                if layout.devmap_bit is not None:
                    assert bool(raw >> layout.devmap_bit & 1) == devmap_bit, (case, hex(raw))

        # The holder restores every mapping on SIGTERM: no "Bad page map" at
        # teardown, and nothing else from the kernel since insmod; then the
        # module unloads.
        pid = held[0].pid
        rc, out = guest.run(
            f"kill -TERM {pid}; for i in $(seq 100); do"
            f" kill -0 {pid} 2>/dev/null || break; sleep 0.1; done;"
            " dmesg | grep -ci 'bad page map' || true"
        )
        assert rc == 0 and out.strip().splitlines()[-1] == "0", out
        rc, out = guest.run(f"rmmod p2p_violate && dmesg | tail -n +{before + 1}")
        assert rc == 0, out
        print(f"  dmesg from insmod to rmmod:\n{out}")
        complaints = [line for line in out.splitlines() if _COMPLAINT.search(line)]
        assert not complaints, out
