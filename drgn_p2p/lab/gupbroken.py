# SPDX-License-Identifier: GPL-2.0-or-later
"""
GUP on broken mappings
----------------------

The GUP ground truth of :mod:`drgn_p2p.lab.gup`, on the mappings the
``p2p_violate`` module breaks on purpose (:data:`drgn_p2p.lab.kmod.VIOLATE_CASES`):
"Anyone who does O_DIRECT on these ranges will crash the kernel … Should be
easy enough to directly test?" Here a user may oops the kernel, so:

- every case is held by a holder of its own (``holder … violate``, at an
  address no other boot of the run uses, so that one merged audit tells the
  boots' VMAs apart), and each boot holds every case still to probe;
- the cases are probed one after the other; an attempt that kills its holder
  (an oops in its system call) or the guest ends the boot: it is recorded
  with the kernel log it caused (``oops``; ``killed`` when the log says
  nothing), and the next boot goes on with the next user of that case and
  the cases not probed yet. A user that hangs is ``hang``.

The audit of each boot's holders (QMP, before any user ran) carries the
predictions, as in :mod:`drgn_p2p.lab.gup`; :func:`probe_broken` returns one
:class:`~drgn_p2p.lab.gup.GupObserved` for the kernel whose ``audit`` is the
boots' audits with their VMAs together. ``drgn-p2p lab gup-probe --broken``
writes it, ``docs/gup-observed/<release>-broken.json`` keeps it, and
``docs/gup-matrix.md`` joins it like the others. It boots several times: the
lab's slower tier.
"""

import dataclasses
import json
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from . import LabError
from .gup import (DISK_SERIAL, merge_audits, USERS, Attempt, GupObserved, ProbedMapping, _DISK_BYTES, _audit_holders,
                  _mappings, oopsed, user_skips)
from .kmod import VIOLATE_CASES, ViolateCase, build_module
from .scenarios import GUEST_DIR, SCENARIOS, holder_binary, kernel_config
from ..report import vma_at

__all__ = ("ADDRESS_BASE", "probe_broken", "probe_status", "died_attempt", "merge_audits")

#: Where the holder of the n-th mapping of a run maps its case: ADDRESS_BASE
#: + n * ADDRESS_STRIDE (1 GiB apart, so aligned for every case's leaf).
ADDRESS_BASE = 0x5000_0000_0000
ADDRESS_STRIDE = 1 << 30

#: How long a holder may take for its users, in tenths of a second: each
#: user has 20 s (gup.h's alarm) to be interrupted, so a user still in the
#: kernel after a minute is in an uninterruptible wait: ``hang``.
_WAIT_TENTHS = 600

#: pcibar's ivshmem: the memmap-less BAR p2p_violate builds its cases from
#: (its PMD leaves, and its own ZONE_DEVICE chunks, need 2 MiB-aligned room).
_BAR = next(s for s in SCENARIOS if s.name == "pcibar").qemu_args

#: The users the holder tries, in its order (gup.h's enum).
_ORDER = tuple(u for u, _ in USERS)


@dataclass
class _Pending:
    """A case still to probe, from user index ``first`` on."""

    case: ViolateCase
    first: int = 0
    #: The attempts of earlier boots.
    attempts: List[ProbedMapping] = field(default_factory=list)


def died_attempt(user: str, addr: int, log: Sequence[str], hung: bool) -> Attempt:
    """The attempt of *user* at *addr* that killed its holder (or hung, *hung*):
    ``oops`` when the kernel log *log* it added says so, else ``hang`` or ``killed``."""
    outcome = "oops" if oopsed(log) else "hang" if hung else "killed"
    # The head of the log, and past it what names the oops (its lines and where it hit).
    kept = list(log[:60]) + [line for line in log[60:] if _NAMES_OOPS.search(line)][:20]
    return Attempt(user=user, addr=addr, outcome=outcome, errno=None, ret=-1, bytes=0,
                   want=4 if user == "futex" else 4096, leaf_before=0, leaf_after=0, migrated=False,
                   dmesg=tuple(kept))


#: Kernel log lines worth keeping from past the head of a long log.
_NAMES_OOPS = re.compile(r"BUG|WARNING|Oops|general protection|RIP:|Call Trace|Kernel panic|note: ")


def probe_status(kind: str, code: int, out: str) -> str:
    """How gup.sh's probe of *kind* ended, from its exit *code* and output
    *out*: its last ``gup: KIND STATUS`` line; without one, ``timeout`` when
    the guest stopped the script for taking too long (124, 137: a user stuck
    in the kernel, on a host too loaded for the script's own wait), else ``died``."""
    found = re.findall(rf"^gup: {re.escape(kind)} (done|died|oopsed|timeout)$", out, re.M)
    if found:
        return found[-1]
    return "timeout" if code in (124, 137) else "died"


def _probe_one(guest: Any, script: str, kind: str, first: int) -> Tuple[List[Mapping[str, Any]], str, List[str]]:
    """Probe the holder of *kind* from user *first* on: its attempt lines, how
    it ended (``done``, ``died``, ``oopsed``, ``timeout``, ``guest-died``) and the kernel
    log lines the probe added."""
    console_at = len(guest.console_log())
    try:
        _, before = guest.run("dmesg | wc -l")
        code, out = guest.run(f"GUP_FIRST={first} GUP_WAIT={_WAIT_TENTHS} bash {script} probe {kind}", timeout=300)
        status = probe_status(kind, code, out)
    except LabError:
        status = "guest-died"
    path = guest.out_dir / "holders" / f"{kind}.txt.gup"
    lines = [json.loads(line) for source in (path, path.with_name(path.name + ".tmp")) if source.exists()
             for line in source.read_text().splitlines() if line.strip()]
    new_log: List[str] = []
    if status != "done":
        try:
            if status == "guest-died":
                raise LabError("the guest died")
            _, text = guest.run(f"dmesg | tail -n +{int(before.split()[-1]) + 1}", timeout=60)
            new_log = text.splitlines()
        except (LabError, ValueError, IndexError):
            status = "guest-died"
            new_log = guest.console_log()[console_at:].splitlines()
    return lines[: len(_ORDER)], status, new_log


class _BootFailed(LabError):
    """The guest of one boot never got ready."""


def _kind(case: ViolateCase) -> str:
    return f"broken:{case.name}"


def probe_broken(kernel: Any, cases: Optional[Sequence[str]] = None, la57: bool = True,
                 log: Optional[Callable[[str], None]] = None, timeout: float = 240.0,
                 max_boots: int = 60) -> GupObserved:
    """
    Probe every GUP user on every case of ``p2p_violate`` that *kernel* can
    build (or those named in *cases*), booting again after each attempt that
    kills its holder or the guest.

    :param timeout: Seconds until a guest (holding no scenario) must be
        ready; one that is not is booted again, three times at most in a row.
    :raises LabError: if the module cannot be built, three boots in a row
        fail, or the run needs more than *max_boots* boots.
    """
    say = log or (lambda line: None)
    t0 = time.monotonic()
    config = kernel_config(kernel)
    chosen = [c for c in VIOLATE_CASES if not cases or c.name in cases]
    unknown = set(cases or ()) - {c.name for c in VIOLATE_CASES}
    if unknown:
        raise LabError(f"unknown p2p_violate case(s): {', '.join(sorted(unknown))}")
    skipped = {_kind(c): why for c in chosen if (why := c.unsupported(config))}
    pending = [_Pending(c) for c in chosen if _kind(c) not in skipped]
    skipped_users = user_skips(config)
    skipped_users.update({u: "the broken-mapping boots have no NVMe namespace"
                          for u in _ORDER if u.startswith("odirect-nvme") and u not in skipped_users})
    violate = build_module(kernel, "p2p_violate")
    holder = holder_binary()
    release = ""
    audits: List[Mapping[str, Any]] = []
    done: List[ProbedMapping] = []
    held: List[Mapping[str, Any]] = []
    problems: List[str] = []
    boots = failed_boots = 0
    slot = 0
    while pending:
        if boots == max_boots:
            raise LabError(f"the broken-mapping probe needed more than {max_boots} boots")
        boots += 1
        say(f"gup-broken: boot {boots}: {len(pending)} case(s) to probe")
        with tempfile.TemporaryDirectory(prefix="drgn-p2p-gup-broken-") as tmp:
            try:
                pending, slot, release = _one_boot(kernel, pending, slot, la57, timeout, violate, holder,
                                                   Path(tmp), skipped_users, audits, done, held, problems, say)
                failed_boots = 0
            except _BootFailed as e:
                # A guest that never got ready (TCG's early-boot flakes) is booted again;
                # three in a row are the lab's failure.
                failed_boots += 1
                say(f"gup-broken: boot {boots} failed: {e}")
                if failed_boots == 3:
                    raise LabError(f"three boots in a row failed; the last: {e}") from None
    for p in pending:
        problems.append(f"{p.case.name}: not probed")
    mappings = tuple(done)
    return GupObserved(
        kernel=release, users=tuple(u for u in _ORDER if u not in skipped_users), mappings=mappings,
        audit=merge_audits(audits, held) if audits else {}, held=tuple(held), skipped_users=skipped_users,
        skipped=skipped, problems=tuple(dict.fromkeys(problems)),
        timings={"boots": float(boots), "total": time.monotonic() - t0},
    )


def _one_boot(kernel: Any, pending: List[_Pending], slot: int, la57: bool, timeout: float, violate: Path,
              holder: Path, tmp: Path, skipped_users: Mapping[str, str], audits: List[Mapping[str, Any]],
              done: List[ProbedMapping], held: List[Mapping[str, Any]], problems: List[str],
              say: Callable[[str], None]) -> Tuple[List[_Pending], int, str]:
    """Boot, hold every pending case, probe them until an attempt kills something;
    return the cases still pending, the next address slot and the release."""
    from .vm import start

    image = tmp / "disk.img"
    with open(image, "wb") as f:
        f.truncate(_DISK_BYTES)
    qemu_args = ["-drive", f"file={image},if=none,id=qpgupdisk,format=raw",
                 "-device", f"virtio-blk-pci,drive=qpgupdisk,serial={DISK_SERIAL}", *_BAR]
    try:
        guest = start(kernel, [], la57=la57, timeout=timeout, extra_qemu_args=qemu_args)
    except LabError as e:
        raise _BootFailed(str(e)) from None
    try:
        script = shlex.quote(str(GUEST_DIR / "gup.sh"))
        code, out = guest.run(f"bash {script} setup {DISK_SERIAL} -", timeout=300)
        problems += [line for line in out.splitlines() if line.startswith("gup: ") and not line.startswith("gup: disk ")]
        code, out = guest.run(f"insmod {shlex.quote(str(violate))} && echo inserted", timeout=120)
        if code != 0 or "inserted" not in out:
            raise LabError(f"insmod p2p_violate failed ({code}): {out.strip()[-500:]}")
        addresses: Dict[str, int] = {}
        for p in pending:
            at = ADDRESS_BASE + slot * ADDRESS_STRIDE
            slot += 1
            kind, c = _kind(p.case), p.case
            manifest = f"/out/holders/{kind}.txt"
            cmd = (f"mkdir -p /out/holders; setsid {shlex.quote(str(holder))} {shlex.quote(manifest)} {kind} "
                   f"{'control' if c.control else 'broken'} violate /dev/p2p_violate {c.pgoff} {c.length} "
                   f"{int(c.touch)} {at:x} </dev/null >{shlex.quote(manifest)}.log 2>&1 &"
                   f" for i in $(seq 100); do [ -e {shlex.quote(manifest)} ] && break; sleep 0.1; done;"
                   f" cat {shlex.quote(manifest)} {shlex.quote(manifest)}.log")
            code, out = guest.run(cmd, timeout=60)
            path = guest.out_dir / "holders" / f"{kind}.txt"
            if not path.exists():
                raise LabError(f"the holder of {c.name} recorded no mapping: {out.strip()[-500:]}")
            words = path.read_text().split()
            held.append({"kind": kind, "pid": int(words[1]), "addr": int(words[2], 16), "len": int(words[3]),
                         "expect": words[4]})
            addresses[kind] = at
        audit = _audit_holders(guest, tmp)
        audits.append(audit)
        _, release = guest.run("uname -r")
        release = release.strip()
        for index, p in enumerate(pending):
            kind = _kind(p.case)
            lines, status, new_log = _probe_one(guest, script, kind, p.first)
            mapping = _mappings(lines, audit, skipped_users) if lines else []
            say(f"gup-broken: {kind} from user {p.first}: {status}, {len(lines)} attempt(s)")
            p.attempts += mapping
            if status == "done":
                done.extend(p.attempts)
                continue
            # The attempt after the last line killed the holder or the guest, or hung.
            died = p.first + len(lines)
            if died < len(_ORDER):
                user = _ORDER[died]
                start_, length = addresses[kind], p.case.length
                attempt = died_attempt(user, start_ + (died << 12) % length, new_log, hung=status == "timeout")
                if user in skipped_users:
                    pass
                elif mapping:
                    last = p.attempts.pop()
                    p.attempts.append(dataclasses.replace(last, attempts=last.attempts + (attempt,)))
                else:
                    h = next(h for h in held if h["kind"] == kind and h["addr"] == start_)
                    p.attempts.append(ProbedMapping(kind, h["expect"], h["pid"], start_, length, (),
                                                    vma_at(audit, h["pid"], start_), (attempt,)))
                p.first = died + 1
            else:
                problems.append(f"{kind}: the holder {status} after its last user")
                p.first = died
            # Whatever killed something may have left the kernel unwell: what is left goes to a new boot.
            if p.first >= len(_ORDER):
                done.extend(p.attempts)
                return pending[index + 1:], slot, release
            return pending[index:], slot, release
        return [], slot, release
    finally:
        guest.close(grace=0)  # a guest that met a broken mapping is not asked to shut down
