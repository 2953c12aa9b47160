# SPDX-License-Identifier: GPL-2.0-or-later
"""Swap-type formula and version tables. Expected numbers: kernel-facts §2.2
(the type table), §3.1 (VM flags), §1.1 (devmap bit)."""

import pytest

from drgn_p2p import layout_tables as lt

T = dict  # a row: field → expected


# kernel-facts §2.2 "Concrete type numbers".
ROWS = [
    (  # 6.1, DEVICE_PRIVATE=n (Debian 6.1.0-50), PTE_MARKER=y
        dict(device_private=False, single_device_exclusive=False, has_swapin_error=True, has_pte_marker=True),
        T(max_swapfiles=26, hwpoison=26, migration_read=27, migration_read_exclusive=28, migration_write=29,
          device_write=None, device_read=None, device_exclusive_write=None, device_exclusive_read=None,
          pte_marker=30, swapin_error=31),
    ),
    (  # 6.1, DEVICE_PRIVATE=y
        dict(device_private=True, single_device_exclusive=False, has_swapin_error=True, has_pte_marker=True),
        T(max_swapfiles=22, hwpoison=22, migration_read=23, migration_read_exclusive=24, migration_write=25,
          device_write=26, device_read=27, device_exclusive_write=28, device_exclusive_read=29,
          pte_marker=30, swapin_error=31),
    ),
    (  # 6.12, DEVICE_PRIVATE=n (Debian 6.12.107)
        dict(device_private=False, single_device_exclusive=False, has_swapin_error=False, has_pte_marker=True),
        T(max_swapfiles=27, hwpoison=27, migration_read=28, migration_read_exclusive=29, migration_write=30,
          device_write=None, device_read=None, device_exclusive_write=None, device_exclusive_read=None,
          pte_marker=31, swapin_error=None),
    ),
    (  # 6.12, DEVICE_PRIVATE=y
        dict(device_private=True, single_device_exclusive=False, has_swapin_error=False, has_pte_marker=True),
        T(max_swapfiles=23, hwpoison=23, migration_read=24, migration_read_exclusive=25, migration_write=26,
          device_write=27, device_read=28, device_exclusive_write=29, device_exclusive_read=30,
          pte_marker=31, swapin_error=None),
    ),
    (  # 7.2, DEVICE_PRIVATE=y (Debian 7.2.13)
        dict(device_private=True, single_device_exclusive=True, has_swapin_error=False, has_pte_marker=True),
        T(max_swapfiles=24, hwpoison=24, migration_read=25, migration_read_exclusive=26, migration_write=27,
          device_write=28, device_read=29, device_exclusive_write=30, device_exclusive_read=30,
          pte_marker=31, swapin_error=None),
    ),
    (  # 7.2, DEVICE_PRIVATE=n
        dict(device_private=False, single_device_exclusive=True, has_swapin_error=False, has_pte_marker=True),
        T(max_swapfiles=27, hwpoison=27, migration_read=28, migration_read_exclusive=29, migration_write=30,
          device_write=None, device_read=None, device_exclusive_write=None, device_exclusive_read=None,
          pte_marker=31, swapin_error=None),
    ),
    (  # 6.1 without CONFIG_PTE_MARKER (arm64-facts: no uffd-wp on arm64 before 6.10)
        dict(device_private=False, single_device_exclusive=False, has_swapin_error=True, has_pte_marker=False),
        T(max_swapfiles=27, hwpoison=27, migration_read=28, migration_read_exclusive=29, migration_write=30,
          pte_marker=None, swapin_error=31),
    ),
]


@pytest.mark.parametrize("config,expected", ROWS)
def test_kernel_facts_table(config, expected):
    st = lt.swap_types(pfn_bits=40, **config)
    for name, value in expected.items():
        assert getattr(st, name) == value, name
    assert st.pfn_bits == 40
    # The learned MAX_SWAPFILES (swap_info's length) is accepted when it agrees.
    assert lt.swap_types(pfn_bits=40, max_swapfiles=expected["max_swapfiles"], **config) == st


def test_max_swapfiles_mismatch_is_an_error():
    with pytest.raises(ValueError, match="MAX_SWAPFILES is 24 but this configuration gives 27"):
        lt.swap_types(device_private=False, single_device_exclusive=True, has_swapin_error=False,
                      has_pte_marker=True, pfn_bits=40, max_swapfiles=24)


def test_without_migration_and_memory_failure():
    st = lt.swap_types(device_private=True, single_device_exclusive=True, has_swapin_error=False,
                       has_pte_marker=True, pfn_bits=34, migration=False, hwpoison=False)
    assert (st.max_swapfiles, st.hwpoison, st.migration_read, st.migration_write) == (28, None, None, None)
    assert (st.device_write, st.device_read, st.device_exclusive_write, st.pte_marker) == (28, 29, 30, 31)


def test_types_never_overlap():
    for config, _ in ROWS:
        st = lt.swap_types(pfn_bits=40, **config)
        types = [st.hwpoison, st.migration_read, st.migration_read_exclusive, st.migration_write,
                 st.device_write, st.device_read, st.device_exclusive_write, st.pte_marker, st.swapin_error]
        if st.device_exclusive_read != st.device_exclusive_write:
            types.append(st.device_exclusive_read)
        present = [t for t in types if t is not None]
        assert len(set(present)) == len(present)
        assert sorted(present) == list(range(st.max_swapfiles, 32))


# --- other version tables ------------------------------------------------------


def test_vm_flag_bits():
    v61, v612, v72 = lt.vm_flag_bits((6, 1)), lt.vm_flag_bits((6, 12)), lt.vm_flag_bits((7, 2))
    for bits in (v61, v612, v72):
        assert (bits["SHARED"], bits["PFNMAP"], bits["IO"], bits["MIXEDMAP"], bits["HUGEPAGE"]) == (3, 10, 14, 28, 29)
        assert (bits["DONTEXPAND"], bits["DONTDUMP"], bits["PAT"]) == (18, 26, 24)
    assert (v61["UFFD_MINOR"], v612["UFFD_MINOR"], v72["UFFD_MINOR"]) == (37, 38, 41)
    # 38 until the arm64 GCS clash fix (v6.16), not from v6.13 on.
    assert [lt.vm_flag_bits(v)["UFFD_MINOR"] for v in ((6, 13), (6, 15), (6, 16))] == [38, 38, 41]
    assert ("SEALED" not in v61, v612["SEALED"], v72["SEALED"]) == (True, 63, 42)
    assert "ALLOW_ANY_UNCACHED" not in v61 and v612["ALLOW_ANY_UNCACHED"] == v72["ALLOW_ANY_UNCACHED"] == 39
    assert v612["SHADOW_STACK"] == 37 and "SHADOW_STACK" not in v61
    assert v72["MAYBE_GUARD"] == 11 and "MAYBE_GUARD" not in v612
    # The lab's vfio VMA 0x800c0444bb has bit 39 = VM_ALLOW_ANY_UNCACHED.
    assert 0x800C0444BB >> v612["ALLOW_ANY_UNCACHED"] & 1
    # No two names share a bit on one kernel.
    for bits in (v61, v612, v72):
        assert len(set(bits.values())) == len(bits)


def test_devmap_and_feature_tables():
    assert [lt.devmap_bit(v) for v in ((6, 1), (6, 5), (6, 6), (6, 12), (6, 16), (6, 17), (7, 2))] == [
        58, 58, 57, 57, 57, None, None]
    assert lt.devmap_bit((6, 12), "arm64") == 57
    assert lt.has_pmd_pud_special((6, 11)) == (False, False)
    assert lt.has_pmd_pud_special((6, 12)) == (True, True)
    assert lt.has_pmd_pud_special((7, 2), "arm64") == (True, False)
    assert [lt.dax_refcounted(v) for v in ((6, 14), (6, 15))] == [False, True]
    assert [lt.single_device_exclusive(v) for v in ((6, 14), (6, 15))] == [False, True]
    assert lt.has_swapin_error((6, 1)) and not lt.has_swapin_error((6, 12))
    assert lt.pte_markers((6, 1)) == {"uffd-wp": 1}
    assert lt.pte_markers((6, 12)) == {"uffd-wp": 1, "poisoned": 2}
    assert lt.pte_markers((7, 2)) == {"uffd-wp": 1, "poisoned": 2, "guard": 4}


@pytest.mark.parametrize(
    "release,version",
    [("6.1.0-50-amd64", (6, 1)), ("6.12.107+deb13-amd64", (6, 12)), ("7.2.13+deb14-amd64", (7, 2)), ("7.3.0-rc7", (7, 3))],
)
def test_parse_release(release, version):
    assert lt.parse_release(release) == version


def test_parse_release_rejects_garbage():
    with pytest.raises(ValueError):
        lt.parse_release("linux")


# (MAX_SWAPFILES, device types, CONFIG_MIGRATION, CONFIG_MEMORY_FAILURE, SWP_SWAPIN_ERROR by release)
# → (SWP_PTE_MARKER, SWP_SWAPIN_ERROR): include/linux/swap.h of 6.1, 6.12 and 7.2.
COUNTS = [
    ((26, 0, True, True, True), (True, True)),  # Debian 6.1: PTE_MARKER=y
    ((27, 0, True, True, True), (False, True)),  # 6.1 with CONFIG_PTE_MARKER=n: SWAPIN_ERROR still there
    ((22, 4, True, True, True), (True, True)),  # 6.1 DEVICE_PRIVATE=y
    ((27, 0, True, True, False), (True, False)),  # Debian 6.12
    ((24, 3, True, True, False), (True, False)),  # Debian 7.2
    ((28, 3, False, False, False), (True, False)),  # 7.2 without MIGRATION and MEMORY_FAILURE
    ((30, 0, False, True, True), (False, True)),  # 6.1 without MIGRATION and PTE_MARKER
]


@pytest.mark.parametrize("args,expected", COUNTS)
def test_special_swap_counts(args, expected):
    max_swapfiles, device_num, migration, hwpoison, swapin = args
    marker, swapin_error, note = lt.special_swap_counts(
        max_swapfiles=max_swapfiles, device_num=device_num, migration=migration, hwpoison=hwpoison, swapin_error=swapin)
    assert (marker, swapin_error) == expected
    assert "no known configuration" not in note
    # What it concludes reproduces the kernel's MAX_SWAPFILES.
    st = lt.swap_types(device_private=device_num > 0, single_device_exclusive=device_num == 3, has_swapin_error=swapin_error,
                       has_pte_marker=marker, migration=migration, hwpoison=hwpoison, pfn_bits=40, max_swapfiles=max_swapfiles)
    assert st.migration_read is None if not migration else st.migration_read == max_swapfiles + hwpoison


def test_special_swap_counts_never_raises():
    marker, swapin_error, note = lt.special_swap_counts(
        max_swapfiles=20, device_num=0, migration=True, hwpoison=True, swapin_error=False)
    assert (marker, swapin_error) == (True, False) and "no known configuration" in note
