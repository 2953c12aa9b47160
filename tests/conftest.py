# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared by tests/unit and tests/lab: this directory is on ``sys.path`` for
both, so that either imports :mod:`report_checkers` (the KTAP parser, the JUnit
schema and the JSON Schema that reports are checked with)."""
