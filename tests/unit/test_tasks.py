# SPDX-License-Identifier: GPL-2.0-or-later
"""How :mod:`drgn_p2p.tasks` reads a damaged PID table and task list, on
hand-built XArrays (the node layout of ``include/linux/xarray.h``) and lists:
every pointer in index order, an unreadable node skips only the PIDs below
it, a corrupt tree (a node that points back at an ancestor) is cut instead of
walked forever, and the task list read from both ends loses only the task
that cannot be read. The lab tests in ``test_reliability.py`` do the same on
a real kernel's dump."""

from types import SimpleNamespace
from typing import Dict, List

import drgn
import pytest

from drgn_p2p import tasks

NODE = 2  # xa_mk_node(): a node pointer has 0b10 in its low bits


class _Value(SimpleNamespace):
    def value_(self) -> int:
        return self.v


class _Slots(list):
    def read_(self) -> "_Slots":
        return self


class FakeNodes:
    """``drgn.Object(prog, "struct xa_node *", address)`` over a dict of nodes."""

    def __init__(self, nodes: Dict[int, Dict]) -> None:
        self.nodes = nodes

    def __call__(self, prog, type_, address: int):
        nodes = self.nodes

        class Node:  # like a drgn.Object: memory is read when a member's value is
            @property
            def shift(self):
                return _Value(v=self._node()["shift"])

            @property
            def slots(self):
                slots = [0] * 64
                slots[: len(self._node()["slots"])] = self._node()["slots"]
                return _Slots(_Value(v=s) for s in slots)

            @staticmethod
            def _node():
                if address not in nodes:
                    raise drgn.FaultError("could not read memory", address)
                return nodes[address]

        return Node()


def _walk(monkeypatch: pytest.MonkeyPatch, head: int, nodes: Dict[int, Dict]):
    monkeypatch.setattr(tasks.drgn, "Object", FakeNodes(nodes))
    faults: List[str] = []
    prog = SimpleNamespace(type=lambda name: name)
    xa = SimpleNamespace(xa_head=_Value(v=head))
    return list(tasks._xa_entries(prog, xa, lambda message, pid: faults.append(message if pid is None else (message, pid)))), faults


def test_every_pointer_in_index_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # a root of shift 6 over two leaves: PIDs 1, 2, 63 and 64 + 5
    nodes = {
        0x1000: {"shift": 6, "slots": [0x2000 | NODE, 0x3000 | NODE]},
        0x2000: {"shift": 0, "slots": [0, 0xA010, 0xA020] + [0] * 60 + [0xA3F0]},
        0x3000: {"shift": 0, "slots": [0, 0, 0, 0, 0, 0xB050]},
    }
    entries, faults = _walk(monkeypatch, 0x1000 | NODE, nodes)
    assert entries == [(1, 0xA010), (2, 0xA020), (63, 0xA3F0), (69, 0xB050)] and faults == []


def test_an_unreadable_node_skips_only_the_pids_below_it(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = {
        0x1000: {"shift": 6, "slots": [0x2000 | NODE, 0x3000 | NODE]},  # 0x2000 is not in the dump
        0x3000: {"shift": 0, "slots": [0xB000, 0, NODE | 4]},  # and a sibling entry, which is no pointer
    }
    entries, faults = _walk(monkeypatch, 0x1000 | NODE, nodes)
    assert entries == [(64, 0xB000)]
    assert faults == ["PID table node 0x2000 (PIDs from 0) cannot be read: could not read memory: 0x2000"]


def test_a_node_pointing_back_at_its_ancestor_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = {
        0x1000: {"shift": 6, "slots": [0x1000 | NODE, 0x3000 | NODE]},
        0x3000: {"shift": 0, "slots": [0xB000, 0x1000 | NODE]},
    }
    entries, faults = _walk(monkeypatch, 0x1000 | NODE, nodes)
    assert entries == [(64, 0xB000)]
    assert faults == ["PID table node 0x1000 (PIDs from 0) is corrupt: shift 6",
                      "PID table node 0x1000 (PIDs from 65) is corrupt: shift 6"]


def test_a_single_entry_without_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _walk(monkeypatch, 0xA000, {}) == ([(0, 0xA000)], [])
    assert _walk(monkeypatch, 0, {}) == ([], [])


class _ListNode:
    """A ``struct list_head *`` in a dict of {address: (next, prev)}; reading an absent one faults."""

    def __init__(self, heads: Dict[int, tuple], address: int) -> None:
        self.heads, self.address = heads, address

    def value_(self) -> int:
        return self.address

    def member_(self, name: str) -> "_ListNode":
        if self.address not in self.heads:
            raise drgn.FaultError("could not read memory", self.address)
        nxt, prev = self.heads[self.address]
        return _ListNode(self.heads, nxt if name == "next" else prev)

    def read_(self) -> "_ListNode":
        return self


def _task_list(monkeypatch: pytest.MonkeyPatch, heads: Dict[int, tuple], head: int):
    offset = 0x100  # offsetof(struct task_struct, tasks)
    monkeypatch.setattr(tasks.drgn, "offsetof", lambda type_, member: offset)
    monkeypatch.setattr(tasks.drgn, "Object", lambda prog, type_, address: SimpleNamespace(value_=lambda: address))
    init_task = SimpleNamespace(tasks=SimpleNamespace(address_of_=lambda: _ListNode(heads, head)))

    class Prog:
        def __getitem__(self, name: str):
            return init_task

        def type(self, name: str):
            return SimpleNamespace(type=name)

    faults: List[str] = []
    found = [t.value_() + offset for t in tasks._task_list(Prog(), lambda message, pid: faults.append(message if pid is None else (message, pid)))]
    return found, faults


def test_the_task_list_read_from_both_ends_loses_only_the_unreadable_task(monkeypatch: pytest.MonkeyPatch) -> None:
    # head <-> A <-> B <-> C <-> D <-> head, and C's page is not in the dump
    H, A, B, C, D = 0x10, 0x1A0, 0x1B0, 0x1C0, 0x1D0
    heads = {H: (A, D), A: (B, H), B: (C, A), D: (H, C)}
    found, faults = _task_list(monkeypatch, heads, H)
    assert found == [A, B, C, D]  # C itself is handed over: reading it will fail, and be counted
    assert faults == [f"the task list cannot be followed (next) past {C - 0x100:#x}: "
                      f"FaultError: could not read memory: {C:#x}"]


def test_a_whole_task_list_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    H, A, B = 0x10, 0x1A0, 0x1B0
    assert _task_list(monkeypatch, {H: (A, B), A: (B, H), B: (H, A)}, H) == ([A, B], [])
