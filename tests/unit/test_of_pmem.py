# SPDX-License-Identifier: GPL-2.0-or-later
"""The pmem-region nodes of the arm64 lab's DT pmem scenarios: each one's
range lies in the guest's RAM above ``mem=``, apart from the other's, on
memory-section boundaries, and reaches the guest through config.env."""

import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

from drgn_p2p.lab import vm
from drgn_p2p.lab.scenarios import OF_PMEM_RANGES, SCENARIOS, Plan

#: Where QEMU virt's RAM starts (hw/arm/virt.c memmap: VIRT_MEM at 1 GiB).
VIRT_RAM_BASE = 1 << 30
#: SECTION_SIZE_BITS with 4K and 16K pages (arch/arm64/include/asm/sparsemem.h): 128 MiB.
SECTION = 1 << 27


def _mib(word: str) -> int:
    assert word.endswith("M"), word
    return int(word[:-1]) << 20


def _plan(*names: str) -> Plan:
    return Plan(tuple(s for s in SCENARIOS if s.name in names), {}, None)


def test_each_node_is_guest_ram_that_mem_leaves_out():
    plan = _plan(*OF_PMEM_RANGES)
    ranges = sorted(plan.of_pmem().values())
    assert len(ranges) == len(OF_PMEM_RANGES) == 2
    (mem,) = {w for w in plan.cmdline() if w.startswith("mem=")}
    ram_end = VIRT_RAM_BASE + _mib(mem[len("mem="):])
    guest_end = VIRT_RAM_BASE + _mib(vm.GUEST_MEMORY)
    for (start, size), nxt in zip(ranges, ranges[1:] + [(guest_end, 0)]):
        assert ram_end <= start and start + size <= nxt[0] <= guest_end
        assert start % SECTION == 0 and size % SECTION == 0


def test_a_plan_gives_only_its_own_nodes():
    assert _plan("devdax-of").of_pmem() == {"devdax-of": OF_PMEM_RANGES["devdax-of"]}
    assert _plan("anon").of_pmem() == {}


def test_config_env_names_each_nodes_start(tmp_path: Path):
    kernel = SimpleNamespace(kver="7.2.0", dir=tmp_path, modules_dir=None, arch="arm64")
    env = tmp_path / "config.env"
    env.write_text(vm._config_env(kernel, _plan("fsdax-of", "devdax-of"), tmp_path / "holder"))
    script = f'. {shlex.quote(str(env))}; for k in "${{!QP_OF_PMEM[@]}}"; do echo "$k $((QP_OF_PMEM[$k]))"; done'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert dict(line.split() for line in out.splitlines()) == {
        name: str(start) for name, (start, _) in OF_PMEM_RANGES.items()}


def test_arm64_coherent_memory_is_guest_ram_that_mem_leaves_out():
    """test_hmm's coherent devices on arm64 take 256 MiB each (its DEVMEM_CHUNK_SIZE) of
    guest RAM above mem=, past the pmem nodes: memremap_pages() refuses System RAM."""
    from drgn_p2p.lab.scenarios import ARM64_COHERENT_BASES

    coherent = next(s for s in SCENARIOS if s.name == "device-coherent").on("arm64")
    plan = Plan((*(s for s in SCENARIOS if s.name in OF_PMEM_RANGES), coherent), {}, None)
    (mem,) = {w for w in plan.cmdline() if w.startswith("mem=")}
    ram_end = VIRT_RAM_BASE + _mib(mem[len("mem="):])
    guest_end = VIRT_RAM_BASE + (plan.memory_mib(_mib(vm.GUEST_MEMORY) >> 20) << 20)
    taken = sorted([*OF_PMEM_RANGES.values(), *((base, 256 << 20) for base in ARM64_COHERENT_BASES)])
    for (start, size), (nxt, _) in zip(taken, taken[1:] + [(guest_end, 0)]):
        assert ram_end <= start and start + size <= nxt <= guest_end
    assert plan.test_hmm_args() == [f"spm_addr_dev{i}={base:#x}" for i, base in enumerate(ARM64_COHERENT_BASES)]
