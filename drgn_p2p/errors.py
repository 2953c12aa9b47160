# SPDX-License-Identifier: GPL-2.0-or-later
"""
Errors and exit codes
---------------------

Every failure the user can cause or meet (bad input, wrong vmlinux, not
root, unreadable memory) is a :class:`P2PError` with a one-line message; the
CLI prints it and exits with :data:`EXIT_ERROR`.
"""

__all__ = ("EXIT_CLEAN", "EXIT_FINDINGS", "EXIT_ERROR", "P2PError", "TargetError", "UsageError")

#: The audit ran and found nothing at or above the ``--fail-on`` threshold.
EXIT_CLEAN = 0
#: The audit ran and found something at or above the threshold.
EXIT_FINDINGS = 1
#: Usage error, or the target could not be opened or understood.
EXIT_ERROR = 2


class P2PError(Exception):
    """An error with a one-line message meant for the user."""


class TargetError(P2PError):
    """The target kernel (kcore, vmcore, QMP, debug info) could not be used."""


class UsageError(P2PError):
    """The command line asked for something that does not exist."""
