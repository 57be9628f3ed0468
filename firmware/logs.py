"""Logging set-up: stderr without timestamps for journald (it adds its own), short for CLI commands.

Log reasons and counts, never token ids or QR texts (DESIGN promise 4); the
code logs verdict reasons only, and the tests capture a full scan's log to check.
"""

from __future__ import annotations

import logging
import sys

DAEMON_FORMAT = "{name:24.24} {levelname:>7} --- {message}"
CLI_FORMAT = "{levelname}: {message}"


def setup_logging(verbose: bool = False, daemon: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(DAEMON_FORMAT if daemon else CLI_FORMAT, style="{"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO if daemon else logging.WARNING)
    logging.getLogger("gpiozero").setLevel(logging.WARNING)
