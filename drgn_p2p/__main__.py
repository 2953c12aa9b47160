# SPDX-License-Identifier: GPL-2.0-or-later
from .cli import main

main()
