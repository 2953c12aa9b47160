# SPDX-License-Identifier: GPL-2.0-or-later
"""
GUP ground truth
----------------

What the kernel's users of get_user_pages() really do on each mapping the lab
holds: boot a lab kernel with the scenarios held, a virtio-blk disk for
O_DIRECT and a Soft-RoCE device (``rdma_rxe``), take the audit (QMP,
``--json``) of the holders while they hold their mappings, then have every
holder try each user of :data:`USERS` on its own mappings (``guest/gup.h``)
and record what happened: the return value, the errno, the bytes moved,
whether the leaf changed (``/proc/self/pagemap`` before and after), and the
kernel log lines the attempt added.

:func:`probe` returns a :class:`GupObserved`; :meth:`GupObserved.to_json` is
the document ``drgn-p2p/gup-observed/1`` that ``drgn-p2p lab gup-probe``
writes and ``docs/gup-observed/<release>.json`` keeps, and
:func:`render_markdown` turns such documents into ``docs/gup-observed.md``.

Nothing here predicts: the document is what a real kernel did.
"""

import json
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..report import vma_at
from . import LabError, cache_dir
from .scenarios import GUEST_DIR, NVME_CMB_ID, kernel_config, plan

__all__ = ("SCHEMA", "USERS", "NOT_PROBED", "OUTCOME_WORDS", "Attempt", "ProbedMapping", "GupObserved", "merge_audits",
           "outcome_of", "leaf_changed", "user_skips", "attempt_of", "probe", "render_markdown", "main")

SCHEMA = "drgn-p2p/gup-observed/1"

#: The users, in the order each holder tries them, with the config options each needs.
USERS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("odirect-read", ("CONFIG_VIRTIO_BLK",)),
    ("odirect-write", ("CONFIG_VIRTIO_BLK",)),
    ("io-uring-register", ("CONFIG_IO_URING",)),
    ("ibv-reg-mr", ("CONFIG_RDMA_RXE", "CONFIG_INFINIBAND_USER_ACCESS")),
    ("vmsplice", ()),
    ("futex", ("CONFIG_FUTEX",)),
    ("process-vm-readv", ("CONFIG_CROSS_MEMORY_ATTACH",)),
    ("proc-pid-mem", ("CONFIG_PROC_FS",)),
    # O_DIRECT on a namespace of the NVMe controller whose CMB the p2pdma
    # scenarios map: a queue that allows P2PDMA (FOLL_PCI_P2PDMA, v6.2).
    ("odirect-nvme-read", ("CONFIG_BLK_DEV_NVME", "CONFIG_PCI_P2PDMA")),
    ("odirect-nvme-write", ("CONFIG_BLK_DEV_NVME", "CONFIG_PCI_P2PDMA")),
)

#: What each user does, for the rendered page (``guest/gup.h`` does it).
USER_DESCRIPTIONS: Mapping[str, str] = {
    "odirect-read": "pread() of the page from a virtio-blk disk opened O_DIRECT",
    "odirect-write": "pwrite() of the page to it",
    "io-uring-register": "IORING_REGISTER_BUFFERS (FOLL_LONGTERM)",
    "ibv-reg-mr": "RDMA memory registration on Soft-RoCE, IB_ACCESS_LOCAL_WRITE (FOLL_LONGTERM)",
    "vmsplice": "vmsplice() into a pipe",
    "futex": "shared FUTEX_WAIT on the first word, a value it does not hold",
    "process-vm-readv": "process_vm_readv() from a second process",
    "proc-pid-mem": "pread() of /proc/PID/mem from a second process",
    "odirect-nvme-read": "odirect-read from a namespace of the NVMe controller whose CMB backs the p2pdma mappings",
    "odirect-nvme-write": "odirect-write to it",
}

#: The users that need the NVMe namespace, and why they are skipped without it.
_NVME_USERS = ("odirect-nvme-read", "odirect-nvme-write")
_NO_NVME = "no scenario with the NVMe controller's CMB (p2pdma, p2pdma-ro) is held"

#: Held scenarios the probe leaves alone, and why.
NOT_PROBED: Mapping[str, str] = {
    "uffd-wp": "a write fault on a UFFD_WP page waits in handle_userfault() for a userfaultfd reader, "
               "which the holder does not run: the user would hang, not fail",
}

#: Outcomes besides errno names: the whole length moved; fewer bytes without
#: an error; the kernel oopsed or warned; (broken mappings, :mod:`.gupbroken`)
#: the user never returned, or its process died with nothing in the kernel log.
OUTCOME_WORDS = ("ok", "short", "oops", "hang", "killed")

#: Kernel log lines that make an attempt's outcome "oops" (but see :data:`_BAD_PAGE`).
_OOPS = re.compile(r"\bBUG:|\bOops\b|general protection fault|kernel BUG")
#: A WARN: the kernel goes on, and the system call returns what it returns.
_WARN = re.compile(r"\bWARNING:")
#: A page-table entry or page the kernel reports as wrong and goes on:
#: vm_normal_page()'s "Bad page map", the allocator's "Bad page state".
_BAD_PAGE = re.compile(r"BUG: Bad page (map|state)|BUG: Bad rss-counter")


def oopsed(log: Sequence[str]) -> bool:
    """Whether kernel log lines *log* hold an oops or BUG (a bad-page report, a WARN are not)."""
    return any(_OOPS.search(line) and not _BAD_PAGE.search(line) for line in log)


def bad_page_reported(log: Sequence[str]) -> bool:
    """Whether kernel log lines *log* report a bad page-table entry or page."""
    return any(_BAD_PAGE.search(line) for line in log)

#: The virtio-blk disk's serial (``gup.sh setup`` finds it by this).
DISK_SERIAL = "qpgup"
#: The size of it and of the NVMe namespace: the users read page 0 and write page 1.
_DISK_BYTES = 1 << 20

#: The /proc/PID/pagemap bits that tell a leaf: present (63), swapped (62),
#: and the PFN or swap type/offset (bits 0-54). Soft-dirty, exclusive,
#: uffd-wp and file bits can change without the leaf changing.
_LEAF_MASK = (1 << 63) | (1 << 62) | ((1 << 55) - 1)


def outcome_of(errno: Optional[str], nbytes: int, want: int, dmesg: Sequence[str], why: Optional[str]) -> str:
    """
    The observed outcome of one attempt: ``oops`` when the kernel log says it
    oopsed (a WARN or a "Bad page map" report is not: the system call
    still returns, and :attr:`Attempt.warned`/:attr:`Attempt.bad_page` say so), ``error`` when the user could not be set up (*why*),
    ``ok`` when *want* bytes moved, else the errno name, else ``short``.
    """
    if oopsed(dmesg):
        return "oops"
    if why:
        return "error"
    if nbytes == want:
        return "ok"
    return errno or "short"


def leaf_changed(before: int, after: int) -> bool:
    """Whether two raw pagemap entries of one address name different leaves (page, swap entry, presence)."""
    return (before & _LEAF_MASK) != (after & _LEAF_MASK)


@dataclass(frozen=True)
class Attempt:
    """One user tried on one page of a held mapping."""

    #: A name of :data:`USERS`.
    user: str
    #: The probed virtual address (page-aligned).
    addr: int
    #: ``ok``, ``short``, ``oops``, ``error`` (the user could not be set up) or an errno name.
    outcome: str
    #: The errno name the system call left (null on success; the futex's EAGAIN is its success).
    errno: Optional[str]
    #: The system call's return value.
    ret: int
    #: Bytes moved (registered, compared for the futex) and what a full success moves.
    bytes: int
    want: int
    #: Raw /proc/self/pagemap entries before and after (0 where pagemap sees nothing, e.g. VM_PFNMAP).
    leaf_before: int
    leaf_after: int
    #: Whether the leaf changed (a device-private page migrated back, COW broken, swapped in).
    migrated: bool
    #: The kernel log lines the attempt added.
    dmesg: Tuple[str, ...]
    #: Why the user could not be set up (only with outcome ``error``).
    why: Optional[str] = None

    @property
    def bad_page(self) -> bool:
        """The kernel reported a bad page-table entry or page ("Bad page map")."""
        return bad_page_reported(self.dmesg)

    @property
    def warned(self) -> bool:
        """The kernel WARNed during the attempt."""
        return any(_WARN.search(line) for line in self.dmesg)

    def to_json(self) -> Dict[str, Any]:
        return {"user": self.user, "addr": hex(self.addr), "outcome": self.outcome, "errno": self.errno,
                "ret": self.ret, "bytes": self.bytes, "want": self.want, "leaf_before": hex(self.leaf_before),
                "leaf_after": hex(self.leaf_after), "migrated": self.migrated, "bad_page": self.bad_page, "warned": self.warned,
                "dmesg": list(self.dmesg), "why": self.why}


@dataclass(frozen=True)
class ProbedMapping:
    """A held mapping (one manifest line) and every user tried on it."""

    #: The scenario (the manifest's ``kind``) and what the walk should find there (``expect``).
    scenario: str
    expect: str
    pid: int
    #: The mapping the holder recorded.
    start: int
    length: int
    #: The kernel's own flags of the VMA (``/proc/PID/smaps`` VmFlags, e.g. ``rd wr sh pf io``).
    vm_flags: Tuple[str, ...]
    #: The audit's ``vmas`` entry containing ``start`` (null if the audit did not list it).
    vma: Optional[Mapping[str, Any]]
    attempts: Tuple[Attempt, ...]

    def to_json(self) -> Dict[str, Any]:
        return {"scenario": self.scenario, "expect": self.expect, "pid": self.pid, "start": hex(self.start),
                "len": self.length, "vm_flags": list(self.vm_flags), "vma": self.vma,
                "attempts": [a.to_json() for a in self.attempts]}


@dataclass(frozen=True)
class GupObserved:
    """One kernel's ground truth: schema :data:`SCHEMA`."""

    #: ``uname -r`` of the guest.
    kernel: str
    users: Tuple[str, ...]
    mappings: Tuple[ProbedMapping, ...]
    #: The audit document (``drgn-p2p/audit/1``) of the holders, taken before any user ran.
    audit: Mapping[str, Any]
    #: Every mapping the guest held (its manifest: ``kind``, ``pid``, ``addr``, ``len``, ``expect``).
    held: Tuple[Mapping[str, Any], ...] = ()
    #: User → the config option(s) the kernel lacks for it (or that no NVMe namespace was there).
    skipped_users: Mapping[str, str] = field(default_factory=dict)
    #: Scenario → why it was not held (config) or failed to set up ("error: …").
    skipped: Mapping[str, str] = field(default_factory=dict)
    #: Held scenario → why it was not probed (:data:`NOT_PROBED`).
    not_probed: Mapping[str, str] = field(default_factory=dict)
    #: What went wrong on the way (a holder that died or timed out, a user that could not be set up).
    problems: Tuple[str, ...] = ()
    #: Wall-clock seconds: boot, setup, audit, probe, total.
    timings: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {"schema": SCHEMA, "kernel": self.kernel, "when": time.strftime("%Y-%m-%d", time.gmtime()),
                "users": list(self.users), "skipped_users": dict(self.skipped_users),
                "skipped": dict(self.skipped), "not_probed": dict(self.not_probed),
                "problems": list(self.problems), "timings": {k: round(v, 1) for k, v in self.timings.items()},
                "held": [dict(m, addr=hex(int(m["addr"]))) for m in self.held],
                "mappings": [m.to_json() for m in self.mappings], "audit": self.audit}


def user_skips(config: Mapping[str, str]) -> Dict[str, str]:
    """User → why the kernel with *config* cannot run it (the options it lacks)."""
    enabled = {k for k, v in config.items() if v in ("y", "m")}
    out = {}
    for user, needs in USERS:
        lacking = [opt for opt in needs if opt not in enabled]
        if lacking:
            out[user] = "kernel lacks " + ", ".join(lacking)
    return out


def attempt_of(line: Mapping[str, Any]) -> Attempt:
    """An :class:`Attempt` from one JSON line of a holder's ``.gup`` file (``guest/gup.h``)."""
    before, after = int(line["leaf_before"], 16), int(line["leaf_after"], 16)
    dmesg = tuple(line["dmesg"])
    return Attempt(
        user=line["user"], addr=int(line["addr"], 16),
        outcome=outcome_of(line["errno"], line["bytes"], line["want"], dmesg, line["why"]),
        errno=line["errno"], ret=line["ret"], bytes=line["bytes"], want=line["want"],
        leaf_before=before, leaf_after=after, migrated=leaf_changed(before, after), dmesg=dmesg, why=line["why"],
    )


def _mappings(lines: Sequence[Mapping[str, Any]], audit: Mapping[str, Any],
              skipped_users: Mapping[str, str]) -> List[ProbedMapping]:
    """Group the attempt lines by mapping, in the holders' order."""
    groups: Dict[Tuple[str, int, int], List[Mapping[str, Any]]] = {}
    for line in lines:
        groups.setdefault((line["kind"], line["pid"], int(line["start"], 16)), []).append(line)
    out = []
    for (kind, pid, start), group in groups.items():
        attempts = tuple(attempt_of(line) for line in group if line["user"] not in skipped_users)
        out.append(ProbedMapping(kind, group[0]["expect"], pid, start, group[0]["len"],
                                 tuple(group[0]["vm_flags"].split()), vma_at(audit, pid, start), attempts))
    return out


#: What the lab cache's directory is called in a document: the holders' own
#: text is mapped from there, and the document does not keep the host's path.
CACHE_TOKEN = "${XDG_CACHE_HOME:-~/.cache}/drgn-p2p"


def without_cache_path(doc: Any, cache: str) -> Any:
    """*doc* (JSON data) with every string starting with the directory *cache* starting with :data:`CACHE_TOKEN`."""
    if isinstance(doc, str):
        return CACHE_TOKEN + doc[len(cache):] if doc.startswith(cache.rstrip("/") + "/") else doc
    if isinstance(doc, list):
        return [without_cache_path(v, cache) for v in doc]
    if isinstance(doc, dict):
        return {k: without_cache_path(v, cache) for k, v in doc.items()}
    return doc


def _audit_holders(guest, dump_dir: Path) -> Dict[str, Any]:
    """The audit (QMP, JSON, every VMA) of the holder processes; paths in the lab cache as :data:`CACHE_TOKEN`."""
    from .cli import audit_streams

    code, out, err = audit_streams(guest, "qemu", ["--json", "-v", "--comm", "holder", "--fail-on", "error"],
                                   dump_dir)
    if code not in (0, 1) or not out.strip():
        raise LabError(f"the audit of the holders exited {code}: {err.strip()[-800:]}")
    return without_cache_path(json.loads(out), str(cache_dir()))


def probe(kernel: Any, scenarios: Optional[Sequence[str]] = None, la57: bool = True, log=None,
          timeout: float = 600.0) -> GupObserved:
    """
    Boot *kernel* with *scenarios* held (default: every one it supports), audit
    the holders, run every user on every held mapping and return what happened.

    :param la57: 5-level paging; False gives 4-level paging.
    :param log: Called with one progress line at a time (default: nothing).
    :param timeout: Seconds until the guest must hold every mapping (it holds
        every scenario and zoo shape at once: slower than most lab boots).
    :raises LabError: if the guest cannot boot, the audit fails, or the guest
        stops answering.
    """
    from .vm import start

    say = log or (lambda line: None)
    timings: Dict[str, float] = {}
    t0 = time.monotonic()
    nvme = any(f"id={NVME_CMB_ID}," in arg for s in plan(kernel, scenarios).scenarios for arg in s.qemu_args)
    with tempfile.TemporaryDirectory(prefix="drgn-p2p-gup-") as tmp:
        images = {name: Path(tmp) / f"{name}.img" for name in ("disk", "nvme")}
        for image in images.values():
            with open(image, "wb") as f:
                f.truncate(_DISK_BYTES)
        qemu_args = ["-drive", f"file={images['disk']},if=none,id=qpgupdisk,format=raw",
                     "-device", f"virtio-blk-pci,drive=qpgupdisk,serial={DISK_SERIAL}"]
        if nvme:
            qemu_args += ["-drive", f"file={images['nvme']},if=none,id=qpgupns,format=raw",
                          "-device", f"nvme-ns,drive=qpgupns,bus={NVME_CMB_ID},nsid=1"]
        say(f"gup: booting {kernel.kver}")
        guest = start(kernel, scenarios, la57=la57, timeout=timeout, extra_qemu_args=qemu_args)
        try:
            timings["boot"] = time.monotonic() - t0
            return _probe_guest(guest, Path(tmp), nvme, timings, t0, say)
        finally:
            guest.close()


def merge_audits(audits: Sequence[Mapping[str, Any]],
                 held: Optional[Sequence[Mapping[str, Any]]] = None) -> Dict[str, Any]:
    """One audit document from one or several boots' (``drgn-p2p/audit/1``): the first's
    kernel and layout, every boot's VMAs, findings and faults together; with
    *held* (``kind``, ``pid``, ``addr`` of each held mapping), only the VMAs
    and findings of those mappings (a holder's libc, stack and vDSO, once
    per boot, would make the document ten times larger)."""
    merged: Dict[str, Any] = dict(audits[0])
    for key in ("vmas", "findings", "faults"):
        merged[key] = [item for a in audits for item in a.get(key, [])]
    if held is not None:
        spots = {(int(h["pid"]), int(str(h["addr"]), 0)) for h in held}

        def kept(item: Mapping[str, Any]) -> bool:
            span = item.get("vma", item)  # a finding names its VMA; a VMA is one
            lo, hi = int(str(span["start"]), 0), int(str(span["end"]), 0)
            return any(pid == item.get("pid") and lo <= addr < hi for pid, addr in spots)

        merged["vmas"] = [v for v in merged["vmas"] if kept(v)]
        merged["findings"] = [f for f in merged["findings"] if kept(f)]
    return merged


def _probe_guest(guest, tmp: Path, nvme: bool, timings: Dict[str, float], t0: float, say) -> GupObserved:
    """:func:`probe` on the booted *guest*."""
    problems: List[str] = [f"scenario {name} failed to set up: {why}" for name, why in sorted(guest.failed.items())]
    t = time.monotonic()
    skipped_users = user_skips(kernel_config(guest.kernel))
    if not nvme:
        skipped_users.update({u: _NO_NVME for u in _NVME_USERS if u not in skipped_users})
    script = shlex.quote(str(GUEST_DIR / "gup.sh"))
    code, out = guest.run(f"bash {script} setup {DISK_SERIAL} {NVME_CMB_ID if nvme else '-'}", timeout=300)
    say(out.strip())
    if code != 0:
        problems.append(f"gup.sh setup exited {code}: {out.strip()[-500:]}")
    problems += [line for line in out.splitlines() if line.startswith("gup: ") and not line.startswith("gup: disk ")]
    timings["setup"] = time.monotonic() - t
    t = time.monotonic()
    audit = _audit_holders(guest, tmp)
    timings["audit"] = time.monotonic() - t
    held = sorted({m["kind"] for m in guest.mappings})
    kinds = [k for k in held if k not in NOT_PROBED]
    t = time.monotonic()
    code, out = guest.run(f"bash {script} probe {' '.join(kinds)}",
                          timeout=120 + 60 * len(kinds))
    timings["probe"] = time.monotonic() - t
    say(out.strip())
    if code != 0:
        problems.append(f"gup.sh probe exited {code}: {out.strip()[-500:]}")
    problems += [line for line in out.splitlines() if line.startswith("gup:") and not line.endswith(" done")]
    lines: List[Mapping[str, Any]] = []
    for kind in kinds:
        path = guest.out_dir / "holders" / f"{kind}.txt.gup"
        if path.exists():
            lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    _, release = guest.run("uname -r")
    problems += [f"{a['kind']} {a['user']}: {a['why']}" for a in lines if a["why"] and a["user"] not in skipped_users]
    timings["total"] = time.monotonic() - t0
    return GupObserved(
        kernel=release.strip(), users=tuple(u for u, _ in USERS if u not in skipped_users),
        mappings=tuple(_mappings(lines, audit, skipped_users)), audit=merge_audits([audit], guest.mappings),
        held=tuple(guest.mappings),
        skipped_users=skipped_users,
        skipped=dict(guest.skipped), not_probed={k: NOT_PROBED[k] for k in held if k in NOT_PROBED},
        problems=tuple(dict.fromkeys(problems)), timings=timings,
    )


# -- the observed matrix ----------------------------------------------------


def _cell(attempt: Mapping[str, Any]) -> str:
    text = attempt["outcome"]
    if attempt["migrated"]:
        text += " (leaf changed)"
    if attempt.get("bad_page"):
        text += " (Bad page map)"
    if attempt.get("warned"):
        text += " (WARN)"
    return text


def render_markdown(docs: Sequence[Mapping[str, Any]]) -> str:
    """``docs/gup-observed.md``: per mapping (scenario, expect) × user, what each kernel of *docs* did."""
    kernels = list(dict.fromkeys(d["kernel"] for d in docs))
    users = [u for u, _ in USERS]
    # A row per (scenario, expect, n): the n-th mapping of that shape in a holder (io-uring holds two).
    rows: Dict[Tuple[str, str, int], Dict[str, Dict[str, str]]] = {}
    for doc in docs:
        seen: Dict[Tuple[str, str], int] = {}
        for m in doc["mappings"]:
            n = seen[m["scenario"], m["expect"]] = seen.get((m["scenario"], m["expect"]), 0) + 1
            row = rows.setdefault((m["scenario"], m["expect"], n), {})
            for a in m["attempts"]:
                row.setdefault(a["user"], {})[doc["kernel"]] = _cell(a)
    out = [
        "# What the kernel's GUP users really did (lab ground truth)",
        "",
        "Generated by `scripts/gup-observed` from the `drgn-p2p lab gup-probe` "
        "documents in `docs/gup-observed/`; do not edit by hand. Each holder process tried each user on its own mapping "
        "(`drgn_p2p/lab/guest/gup.h`): `ok` is the whole page moved or registered (the futex: the word "
        "compared, EAGAIN), an errno name is what user space got, `oops` a kernel oops or BUG in the log "
        "(`hang`: the user never returned; `killed`: its process died with nothing in the log), "
        "\"(leaf changed)\" that /proc/self/pagemap showed another leaf afterwards, \"(Bad page map)\" that "
        "the kernel reported the entry as bad and went on, \"(WARN)\" that it WARNed and went on.",
        "",
        "Kernels: " + ", ".join(f"`{k}`" for k in kernels) + ". A cell lists the kernels' outcomes in that "
        "order, one when they agree; `–` where that kernel did not hold the mapping or lacks the user "
        "(its config: see the end of the page). Each user probed its own page of the mapping "
        "(`attempts[*].addr` in the documents), so a row can mix pages that were never faulted in "
        "(`tcp-zc`, `vdso`) with pages that were.",
        "",
        "Users: " + "; ".join(f"`{u}` {what}" for u, what in USER_DESCRIPTIONS.items()) + ".",
        "",
        "| mapping | expect | " + " | ".join(f"`{u}`" for u in users) + " |",
        "|---|---|" + "---|" * len(users),
    ]
    for (scenario, expect, n), row in sorted(rows.items()):
        cells = []
        for user in users:
            got = [row.get(user, {}).get(k, "–") for k in kernels]
            cells.append(got[0] if len(set(got)) == 1 else " / ".join(got))
        name = scenario if n == 1 else f"{scenario} ({n})"
        out.append(f"| {name} | {expect} | " + " | ".join(cells) + " |")
    for doc in docs:
        broken = any(m["scenario"].startswith("broken:") for m in doc["mappings"])
        out += ["", f"## `{doc['kernel']}`" + (": the broken mappings (p2p_violate)" if broken else ""), ""]
        if "timings" in doc:
            out.append("- seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in doc["timings"].items()))
        out += [f"- not held: {k}: {v}" for k, v in doc.get("skipped", {}).items()]
        out += [f"- not probed: {k}: {v}" for k, v in doc.get("not_probed", {}).items()]
        out += [f"- user skipped: {k}: {v}" for k, v in doc.get("skipped_users", {}).items()]
        out += [f"- problem: {p}" for p in doc.get("problems", [])]
    return "\n".join(out) + "\n"


def render_main(argv: Optional[Sequence[str]], module: str,
                render: Callable[[Sequence[Mapping[str, Any]]], str]) -> int:
    """``python -m MODULE OBSERVED.json...``: print *render* of the documents,
    oldest kernel first; one ``error:`` line and 2 for a file that is not one."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(f"usage: python -m {module} OBSERVED.json...", file=sys.stderr)
        return 2
    docs = []
    for arg in args:
        try:
            doc = json.loads(Path(arg).read_text())
        except (OSError, ValueError) as e:
            print(f"error: {arg}: {e}", file=sys.stderr)
            return 2
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            print(f"error: {arg} is not a {SCHEMA} document", file=sys.stderr)
            return 2
        docs.append(doc)
    order = {"6.1": 0, "6.12": 1}
    docs.sort(key=lambda d: order.get(".".join(d["kernel"].split(".")[:2]), 2))
    sys.stdout.write(render(docs))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m drgn_p2p.lab.gup OBSERVED.json...``: print the Markdown page of the documents."""
    return render_main(argv, "drgn_p2p.lab.gup", render_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
