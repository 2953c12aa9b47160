# SPDX-License-Identifier: GPL-2.0-or-later
"""Pure helpers of the kernel fetcher and the private apt configuration (no network)."""

import shutil
import struct
from pathlib import Path

import pytest

from drgn_p2p.lab import LabError, cache_dir
from drgn_p2p.lab.apt import parse_depends, parse_madison, parse_stanzas
from drgn_p2p.lab.kernels import (
    KERNEL_NAMES,
    bzimage_release,
    cc_from_config,
    elf_build_id,
    elf_sections,
    image_packages,
    kver_from_meta_depends,
    manifest,
    parse_config,
    user_kernel,
)

MADISON = """\
linux-image-amd64 |   7.2.13-1 | http://mirror.example/debian sid/main amd64 Packages
linux-image-amd64 | 6.12.117-1 | http://mirror.example/debian trixie/main amd64 Packages
linux-image-amd64 |  6.1.176-1 | http://mirror.example/debian bookworm/main amd64 Packages
"""


def test_parse_madison():
    got = parse_madison(MADISON)
    assert [(c.version, c.suite) for c in got] == [
        ("7.2.13-1", "sid"),
        ("6.12.117-1", "trixie"),
        ("6.1.176-1", "bookworm"),
    ]
    assert parse_madison("N: Unable to locate package foo\n") == []


def test_parse_stanzas_and_depends():
    text = (
        "Package: linux-image-7.2.13+deb14-amd64\nVersion: 7.2.13-1\n"
        "Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool,"
        " linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1),"
        " linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)\nDescription: x\n more\n\n"
        "Package: other\nVersion: 1\n"
    )
    stanzas = parse_stanzas(text)
    assert len(stanzas) == 2 and stanzas[0]["Description"] == "x\nmore"
    deps = parse_depends(stanzas[0]["Depends"])
    assert deps[0] == "dracut"
    assert "linux-binary-7.2.13+deb14-amd64" in deps


@pytest.mark.parametrize(
    "depends, kver",
    [
        (["linux-image-6.1.0-50-amd64"], "6.1.0-50-amd64"),
        (["linux-base-amd64", "linux-image-7.2.13+deb14-amd64"], "7.2.13+deb14-amd64"),
        (["linux-image-6.12.117+deb13-amd64-unsigned"], "6.12.117+deb13-amd64"),
    ],
)
def test_kver_from_meta_depends(depends, kver):
    assert kver_from_meta_depends(depends) == kver


def test_kver_from_meta_depends_none():
    with pytest.raises(LabError):
        kver_from_meta_depends(["linux-base-amd64"])


def test_image_packages_unsigned_or_split():
    kver = "6.12.117+deb13-amd64"
    assert image_packages(kver, [f"linux-image-{kver}-unsigned"], []) == [f"linux-image-{kver}-unsigned"]
    kver = "7.2.13+deb14-amd64"
    deps = ["dracut", f"linux-base-{kver}", f"linux-binary-{kver}", f"linux-modules-{kver}"]
    assert image_packages(kver, [], deps) == deps[1:]
    with pytest.raises(LabError):
        image_packages(kver, [], ["dracut"])


def test_parse_config_and_cc():
    config = parse_config(
        'CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"\n'
        "CONFIG_ZONE_DEVICE=y\n# CONFIG_DEVICE_PRIVATE is not set\nCONFIG_PGTABLE_LEVELS=5\n"
    )
    assert config["CONFIG_ZONE_DEVICE"] == "y"
    assert "CONFIG_DEVICE_PRIVATE" not in config
    assert cc_from_config(config) == "gcc-14"
    assert cc_from_config({"CONFIG_CC_VERSION_TEXT": "gcc (Debian 12.2.0-14) 12.2.0"}) == "gcc-12"
    assert cc_from_config({"CONFIG_CC_VERSION_TEXT": "Debian clang version 19.1.7"}) is None
    assert cc_from_config({}) is None


def test_manifest_pins_every_kernel():
    specs = manifest()
    assert set(specs) == set(KERNEL_NAMES)
    for spec in specs.values():
        assert spec.dbg.endswith(f"{spec.kver}-dbg")
        assert all(spec.kver in p for p in spec.packages)


def test_manifest_pins_arm64_kernels_apart():
    """arm64 entries (``arm64/NAME`` in kernels.json) are their own manifest: Debian arch and flavour set."""
    specs = manifest("arm64")
    assert set(specs) == {"newest", "newest-16k", "6.12"}
    for spec in specs.values():
        assert spec.arch == "arm64" and spec.kver.endswith("-" + spec.flavour)
        assert spec.dbg == f"linux-image-{spec.kver}-dbg" and all(spec.kver in p for p in spec.packages)
    assert specs["newest-16k"].flavour == "arm64-16k"
    assert all(spec.arch == "amd64" for spec in manifest().values())
    assert manifest("riscv64") == {}


def test_arm64_image_version_is_read_from_its_banner(tmp_path):
    """An arm64 Image (magic "ARM\\x64" at 0x38, Documentation/arch/arm64/booting.rst) carries
    linux_banner uncompressed; Debian ships it so."""
    from drgn_p2p.lab.kernels import bzimage_release, bzimage_version

    image = bytearray(0x10000)
    image[0:2] = b"MZ"
    image[0x38:0x3C] = b"ARM\x64"
    banner = b"Linux version 7.2.13+deb14-arm64 (debian-kernel@lists.debian.org) (gcc) # SMP Debian 7.2.13-1\n"
    image[0x8000:0x8000 + len(banner)] = banner
    path = tmp_path / "vmlinuz"
    path.write_bytes(bytes(image))
    assert bzimage_version(path) == banner[len("Linux version "):-1].decode()
    assert bzimage_release(path) == "7.2.13+deb14-arm64"
    image[0x8000:0x8000 + len(banner)] = bytes(len(banner))
    path.write_bytes(bytes(image))
    with pytest.raises(LabError, match="banner"):
        bzimage_version(path)


def _tiny_elf(path: Path, build_id: bytes) -> None:
    """Write a minimal ELF64 LE with .debug_info and a GNU build-id note."""
    note = struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id
    names = b"\0.shstrtab\0.debug_info\0.note.gnu.build-id\0"
    body = note + b"\0" * 8 + names
    note_off, info_off, str_off = 64, 64 + len(note), 64 + len(note) + 8
    shoff = 64 + len(body)
    shdrs = b"\0" * 64
    for name_off, off, size in ((1, str_off, len(names)), (11, info_off, 8), (23, note_off, len(note))):
        shdrs += struct.pack("<IIQQQQIIQQ", name_off, 1, 0, 0, off, size, 0, 0, 1, 0)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 4, 1)
    path.write_bytes(header + body + shdrs)


def test_elf_sections_and_build_id(tmp_path):
    elf = tmp_path / "vmlinux"
    _tiny_elf(elf, bytes(range(20)))
    sections = elf_sections(elf)
    assert {".debug_info", ".note.gnu.build-id", ".shstrtab"} <= set(sections)
    assert elf_build_id(elf) == bytes(range(20)).hex()
    (tmp_path / "junk").write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(ValueError):
        elf_sections(tmp_path / "junk")


def _tiny_bzimage(path: Path, version: str) -> None:
    image = bytearray(0x1000)
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x20E, 0x400)
    image[0x600 : 0x600 + len(version) + 1] = version.encode() + b"\0"
    path.write_bytes(bytes(image))


def test_user_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bz, vmlinux = tmp_path / "bzImage", tmp_path / "vmlinux"
    _tiny_bzimage(bz, "6.13.0-rc1+ (me@host) #1 SMP")
    _tiny_elf(vmlinux, b"\1" * 20)
    assert bzimage_release(bz) == "6.13.0-rc1+"
    (tmp_path / ".config").write_text("CONFIG_FS_DAX=y\n")
    kernel = user_kernel(bz, vmlinux)
    assert kernel.kver == "6.13.0-rc1+" and kernel.vmlinuz == bz and kernel.modules_dir is None
    assert kernel.config == {"CONFIG_FS_DAX": "y"}
    moddir = tmp_path / "lib" / "modules" / "6.13.0-rc1+"
    (moddir / "build").mkdir(parents=True)
    (moddir / "modules.dep").write_text("")
    (moddir / "build" / ".config").write_text("CONFIG_ZONE_DEVICE=y\n")
    kernel = user_kernel(bz, vmlinux, moddir)
    assert kernel.config == {"CONFIG_ZONE_DEVICE": "y"} and kernel.modules_dir == moddir
    with pytest.raises(LabError):
        user_kernel(tmp_path / "missing", vmlinux)


def test_user_kernel_without_a_config_says_where_it_looked(tmp_path, monkeypatch):
    bz, vmlinux = tmp_path / "vmlinuz-6.13.0-rc1+", tmp_path / "vmlinux"
    _tiny_bzimage(bz, "6.13.0-rc1+ (me@host) #1 SMP")
    _tiny_elf(vmlinux, b"\1" * 20)
    with pytest.raises(LabError, match=r"^no config found for 6\.13\.0-rc1\+ \(looked in .*/config-6\.13\.0-rc1\+, "
                       r".*, /boot/config-6\.13\.0-rc1\+\); pass --config$"):
        user_kernel(bz, vmlinux)


def _package(root: Path, kver: str) -> Path:
    """A kernel laid out as Debian's linux-image package lays it out: boot/ and a
    module tree as dpkg-deb -x extracts it (no modules.dep: depmod runs at install)."""
    (root / "boot").mkdir(parents=True)
    _tiny_bzimage(root / "boot" / f"vmlinuz-{kver}", f"{kver} (debian-kernel@lists.debian.org) #1 SMP")
    (root / "boot" / f"config-{kver}").write_text("CONFIG_ZONE_DEVICE=y\nCONFIG_FS_DAX=y\n")
    (root / "boot" / f"System.map-{kver}").write_text("ffffffff81000000 T _text\n")
    moddir = root / "lib" / "modules" / kver
    (moddir / "kernel" / "drivers").mkdir(parents=True)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        (moddir / name).write_text("")
    return root / "boot" / f"vmlinuz-{kver}"


def test_user_kernel_laid_out_as_a_package(tmp_path, monkeypatch):
    if shutil.which("depmod") is None:
        pytest.skip("depmod (kmod) is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kver = "6.12.117+deb13-amd64"
    image = _package(tmp_path / "pkg", kver)
    vmlinux = tmp_path / "vmlinux"
    _tiny_elf(vmlinux, b"\1" * 20)
    kernel = user_kernel(image, vmlinux)
    assert kernel.kver == kver
    assert kernel.config == {"CONFIG_ZONE_DEVICE": "y", "CONFIG_FS_DAX": "y"}  # config-KVER beside the image
    # the package's tree is left alone; the lab's own copy has modules.dep
    original = tmp_path / "pkg" / "lib" / "modules" / kver
    assert not (original / "modules.dep").exists()
    assert kernel.modules_dir.is_relative_to(tmp_path / "cache" / "drgn-p2p")
    assert (kernel.modules_dir / "modules.dep").is_file()
    assert (kernel.modules_dir / "modules.order").resolve() == original / "modules.order"
    # given explicitly, the same tree gives the same copy
    assert user_kernel(image, vmlinux, original).modules_dir == kernel.modules_dir


def test_cache_dir_honours_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "drgn-p2p"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache_dir() == Path.home() / ".cache" / "drgn-p2p"
