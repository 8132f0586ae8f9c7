"""Hand a file or folder to the desktop: open with the default application, show in its folder."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from chimera_tk.errors import UserError

log = logging.getLogger(__name__)


def open_path(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path} is no longer there")
    if sys.platform.startswith("win"):
        os.startfile(path)  # type: ignore[attr-defined]
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    try:
        subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except FileNotFoundError:
        raise UserError(f"no program to open files with ({opener} is missing)") from None


def show_in_folder(path: Path) -> None:
    if sys.platform == "darwin":
        subprocess.Popen(["open", "-R", str(path)], start_new_session=True)
    elif sys.platform.startswith("win"):
        subprocess.Popen(["explorer", "/select,", str(path)])
    else:
        open_path(path.parent)
