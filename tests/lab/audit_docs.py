# SPDX-License-Identifier: GPL-2.0-or-later
"""
Checks on audit documents (``audit --json``) shared by the lab tests: a VMA by
address, its runs, and whether an audit of a damaged or filtered dump marks
everything it could not read, compared with the audit of the whole dump.
"""

from collections import Counter
from typing import Dict, List, Tuple

from drgn_p2p.report import vma_at

#: _PAGE_ACCESSED: LRU aging may clear it between a QMP audit and a dump.
_ACCESSED = 1 << 5


vma_of = vma_at  # the audit's reader of its own documents


def runs(vma: Dict) -> List[Tuple]:
    return [(r["start"], r["end"], r["level"], r["entry"], hex(int(r["raw"], 16) & ~_ACCESSED), r["page"])
            for r in vma.get("runs", [])]


def same_or_marked(got: Dict, ref: Dict, doc: Dict) -> bool:
    """*got* (a VMA of filtered dump *doc*) has *ref*'s runs; where part of the
    pgmap table could not be read (``summary.unreadable_pgmaps``, counted), a
    device page may read as RAM, as the README says, and nothing else differs."""
    a, b = runs(got), runs(ref)
    if a == b:
        return True
    return bool(doc["summary"]["unreadable_pgmaps"]) and len(a) == len(b) and all(
        x[:-1] == y[:-1] and x[-1] == "ram" for x, y in zip(a, b) if x != y)


def check_faults_counted(doc: Dict) -> None:
    """The summary counts exactly the faults the document lists, by scope, and
    each VMA counts exactly the table faults listed for its process and range."""
    s = doc["summary"]
    scopes = Counter(f["scope"] for f in doc["faults"])
    assert set(scopes) <= {"table", "process", "tasks", "pgmaps"}, scopes
    # a table shared by two VMAs is listed for each, and counted once per process
    tables = {(f["pid"], f["phys"]) for f in doc["faults"] if f["scope"] == "table"}
    assert len(tables) == s["unreadable_tables"], (s, doc["faults"][:5])
    assert scopes["process"] + scopes["tasks"] == s["unreadable_processes"], (s, doc["faults"][:5])
    assert scopes["pgmaps"] == s["unreadable_pgmaps"], (s, doc["faults"][:5])
    assert sum(v["unreadable_tables"] for v in doc["vmas"]) == scopes["table"], doc["faults"][:5]
    for v in doc["vmas"]:
        listed = table_faults_in(doc, v)
        assert len(listed) == v["unreadable_tables"], (v["pid"], v["start"], v["unreadable_tables"], listed)


def process_missing_because(doc: Dict, pid: int) -> List[Dict]:
    """The faults that explain why *pid*'s VMAs are missing from *doc*: one
    naming the process, or, when none of its VMAs was read at all, a lost part
    of the PID table or task list."""
    named = [f for f in doc["faults"] if f["scope"] == "process" and f["pid"] == pid]
    if named:
        return named
    if any(v["pid"] == pid for v in doc["vmas"]):
        return []  # some of its VMAs were read: a missing one is not explained by the task list
    return [f for f in doc["faults"] if f["scope"] == "tasks"]


def table_faults_in(doc: Dict, vma: Dict) -> List[Dict]:
    """The unreadable page tables listed for *vma*'s process inside its range
    (a fault's ``va`` is the first address of the VMA its table would map)."""
    start, end = int(vma["start"], 16), int(vma["end"], 16)
    return [f for f in doc["faults"] if f["scope"] == "table" and f["pid"] == vma["pid"]
            and start <= int(f["va"], 16) < end]


def compare_marked(whole: Dict, cut: Dict) -> Tuple[int, int, int, List[str]]:
    """Compare the audit *cut* of a damaged or filtered dump with the audit
    *whole* of the whole one: each VMA is the same (flags and raw entries), or
    has its unreadable page tables listed, or belongs to a process whose loss
    is listed; nothing goes missing unmarked. Returns the counts of VMAs that
    are the same, marked by tables, marked by their process, and the problems."""
    check_faults_counted(cut)
    same = marked_tables = marked_processes = 0
    problems = []
    for ref in whole["vmas"]:
        got = vma_of(cut, ref["pid"], int(ref["start"], 16))
        if got is None:
            if process_missing_because(cut, ref["pid"]):
                marked_processes += 1
            else:
                problems.append(f"pid {ref['pid']} VMA {ref['start']} missing without a fault")
            continue
        if got["flags"] != ref["flags"]:
            problems.append(f"pid {ref['pid']} VMA {ref['start']}: flags {got['flags']} != {ref['flags']}")
        elif same_or_marked(got, ref, cut):
            same += 1
        elif got["unreadable_tables"] and table_faults_in(cut, got):
            marked_tables += 1
        else:
            problems.append(f"pid {ref['pid']} VMA {ref['start']}: entries differ with no unreadable table")
    return same, marked_tables, marked_processes, problems
