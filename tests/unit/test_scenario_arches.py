# SPDX-License-Identifier: GPL-2.0-or-later
"""A scenario's per-architecture form: vfio-huge is a PUD PFNMAP behind
intel-iommu on x86-64 and a PMD PFNMAP behind virt's SMMUv3 on arm64, chosen
by the kernel's config (ARCH_SUPPORTS_PUD_PFNMAP / ARCH_SUPPORTS_PMD_PFNMAP)."""

from types import SimpleNamespace

from drgn_p2p.lab import scenarios


def _kernel(arch: str, *options: str) -> SimpleNamespace:
    return SimpleNamespace(kver="7.2.13", arch=arch, config={opt: "y" for opt in options})


def test_arch_variants_keep_their_scenarios_name():
    for s in scenarios.SCENARIOS:
        for arch, variant in s.arches:
            assert variant.name == s.name and not variant.arches, (s.name, arch)
            assert s.on(arch) is variant
        assert s.on("amd64") is s


def test_vfio_huge_on_x86_64_is_a_pud_behind_intel_iommu():
    kernel = _kernel("amd64", "CONFIG_VFIO_PCI", "CONFIG_INTEL_IOMMU", "CONFIG_ARCH_SUPPORTS_PUD_PFNMAP",
                     "CONFIG_ARCH_SUPPORTS_PMD_PFNMAP")
    plan = scenarios.plan(kernel, ["vfio-huge"])
    (s,) = plan.scenarios
    assert s.expect == "pfnmap-pud" and scenarios.expect_of("vfio-huge") == "pfnmap-pud"
    assert plan.qemu_args()[0] == ["-device", "intel-iommu,intremap=off"] and plan.machine_props() == []
    assert "intel_iommu=on" in plan.cmdline()


def test_vfio_huge_on_arm64_is_a_pmd_behind_smmuv3():
    # Debian's arm64 7.2 config: ARCH_SUPPORTS_PMD_PFNMAP=y, no ARCH_SUPPORTS_PUD_PFNMAP, ARM_SMMU_V3=y.
    kernel = _kernel("arm64", "CONFIG_VFIO_PCI", "CONFIG_ARM_SMMU_V3", "CONFIG_ARCH_SUPPORTS_PMD_PFNMAP")
    plan = scenarios.plan(kernel, ["vfio-huge"])
    (s,) = plan.scenarios
    assert s.expect == "pfnmap-pmd" and scenarios.expect_of("vfio-huge", "arm64") == "pfnmap-pmd"
    early, devices = plan.qemu_args()
    assert early == [] and "ivshmem-plain,memdev=qp-ivs1" in devices
    assert plan.machine_props() == ["iommu=smmuv3"]
    assert not [w for w in plan.cmdline() if w.startswith(("intel_iommu", "iommu="))]


def test_vfio_huge_on_arm64_without_an_smmuv3_driver_is_skipped_naming_it():
    plan = scenarios.plan(_kernel("arm64", "CONFIG_VFIO_PCI", "CONFIG_ARCH_SUPPORTS_PMD_PFNMAP"), ["vfio-huge"])
    assert plan.skipped["vfio-huge"].startswith("kernel lacks CONFIG_ARM_SMMU_V3")


def test_machine_properties_reach_qemus_machine_option(tmp_path, monkeypatch):
    from drgn_p2p.lab import vm

    monkeypatch.setattr(vm.shutil, "which", lambda name: f"/usr/bin/{name}")
    for arch, options, machine in (
        ("arm64", ("CONFIG_VFIO_PCI", "CONFIG_ARM_SMMU_V3", "CONFIG_ARCH_SUPPORTS_PMD_PFNMAP"),
         "virt,gic-version=3,iommu=smmuv3"),
        ("amd64", ("CONFIG_VFIO_PCI", "CONFIG_INTEL_IOMMU", "CONFIG_ARCH_SUPPORTS_PUD_PFNMAP"), "q35"),
    ):
        kernel = _kernel(arch, *options)
        kernel.vmlinuz = tmp_path / "vmlinuz"
        argv = vm._qemu_argv(kernel, tmp_path / "initrd", tmp_path, scenarios.plan(kernel, ["vfio-huge"]),
                             True, "2560M", 2, [])
        assert argv[argv.index("-machine") + 1] == machine, argv
