"""Logging: a rotating file per profile (INFO and up), the console only with --verbose."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from chimera_tk.fsutil import create_private_file

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
_OURS = "_chimera_handler"
# CHIMERA_DEBUG_LOG=1 writes DEBUG records to the log file too (the console is unchanged): the
# test suite runs once this way to prove that no secret reaches the log at any level.
DEBUG_LOG_ENV = "CHIMERA_DEBUG_LOG"


def debug_log_forced() -> bool:
    return os.environ.get(DEBUG_LOG_ENV, "") not in ("", "0")


def setup_logging(logs_dir: Path | None, *, verbose: bool = False) -> Path | None:
    """(Re)configure the root logger; returns the log file's path, if any."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG if verbose or debug_log_forced() else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    setattr(console, _OURS, True)
    root.addHandler(console)
    if logs_dir is None:
        return None
    log_file = logs_dir / "chimera.log"
    create_private_file(log_file)
    file_handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    setattr(file_handler, _OURS, True)
    root.addHandler(file_handler)
    return log_file
