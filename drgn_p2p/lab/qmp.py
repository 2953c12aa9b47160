# SPDX-License-Identifier: GPL-2.0-or-later
"""
QMP
---

A tiny client for the QEMU Machine Protocol over a Unix socket: connect, read
the greeting, negotiate ``qmp_capabilities``, then :meth:`Qmp.execute`
commands one at a time. Asynchronous events are collected in
:attr:`Qmp.events` and otherwise ignored.
"""

import json
import socket
import time
from typing import Any, Dict, List, Optional

from drgn_p2p.lab import LabError

__all__ = ("Qmp",)


class Qmp:
    """A connected QMP session (use as a context manager)."""

    def __init__(self, path: str, connect_timeout: float = 10.0) -> None:
        """
        Connect to the QMP socket at *path*, retrying until *connect_timeout*
        seconds have passed (QEMU creates the socket shortly after start).
        """
        self.path = path
        self.events: List[Dict[str, Any]] = []
        self._sock = self._connect(path, connect_timeout)
        self._file = self._sock.makefile("rb")
        self._sock.settimeout(connect_timeout)
        greeting = self._read()
        if "QMP" not in greeting:
            raise LabError(f"unexpected QMP greeting on {path}: {greeting}")
        self.execute("qmp_capabilities")

    @staticmethod
    def _connect(path: str, timeout: float) -> socket.socket:
        """Connect to a Unix socket, retrying while it does not exist yet."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                return sock
            except OSError as e:
                sock.close()
                if time.monotonic() >= deadline:
                    raise LabError(f"cannot connect to QMP socket {path}: {e}") from e
                time.sleep(0.05)

    def _read(self) -> Dict[str, Any]:
        """Read one JSON message."""
        try:
            line = self._file.readline()
        except socket.timeout as e:
            raise LabError(f"QMP {self.path}: timed out waiting for a reply") from e
        if not line:
            raise LabError(f"QMP {self.path}: connection closed")
        return json.loads(line)

    def execute(self, command: str, arguments: Optional[Dict[str, Any]] = None,
                timeout: float = 60.0) -> Any:
        """
        Run one QMP command and return its ``return`` value.

        :raises LabError: if QEMU answers with an error or does not answer
            within *timeout* seconds.
        """
        msg: Dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._sock.settimeout(timeout)
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                err = reply["error"]
                raise LabError(f"QMP {command} failed: {err.get('class')}: {err.get('desc')}")
            elif "return" in reply:
                return reply["return"]

    def close(self) -> None:
        """Close the session."""
        self._file.close()
        self._sock.close()

    def __enter__(self) -> "Qmp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
