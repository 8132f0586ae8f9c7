"""Start-up: heavy libraries stay out of the first paint, logs are private and rotate."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chimera_tk.logging_setup import setup_logging
from tests.conftest import pump_until

CHECK_IMPORTS = """
import sys
from chimera_tk.app import build_app
from chimera_tk.config import Config
from chimera_tk.profiles import profile_paths
app = build_app(profile_paths("p", sys.argv[1]).ensure(), Config(), theme="light")
app.start()  # the window is mapped; drawing it needs no further Python import
print(sorted(m for m in ("telethon", "pystray", "PIL", "cryptography", "psutil")
             if m in sys.modules))
app.root.update()
app.shutdown()
"""


@pytest.mark.gui
def test_heavy_libraries_are_not_imported_before_the_first_paint(x_display: str,
                                                                 tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_log_file_is_private_and_verbose_goes_to_the_console(tmp_path: Path, capsys) -> None:
    import logging

    log_file = setup_logging(tmp_path, verbose=True)
    logging.getLogger("chimera_tk.test").debug("a detail for developers")
    assert "a detail for developers" in capsys.readouterr().err
    setup_logging(tmp_path, verbose=False)
    logging.getLogger("chimera_tk.test").info("only in the file")
    assert "only in the file" not in capsys.readouterr().err
    assert log_file is not None and "only in the file" in log_file.read_text()
    assert os.stat(log_file).st_mode & 0o777 == 0o600
    setup_logging(None)


def test_log_file_rotates_instead_of_growing_forever(tmp_path: Path) -> None:
    import logging

    setup_logging(tmp_path)
    chunk = "x" * 10_000
    for _ in range(500):  # ~5 MB through a 2 MB rotating file
        logging.getLogger("chimera_tk.test").info(chunk)
    setup_logging(None)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "chimera.log.1" in files
    assert all((tmp_path / name).stat().st_size <= 2_100_000 for name in files)


@pytest.mark.gui
def test_ctrl_q_quits(app) -> None:
    app.root.focus_force()
    app.root.update()
    app.root.event_generate("<Control-q>")
    assert pump_until(app, lambda: not app._running)
