"""The one-file executable: built with scripts/build-exe, its --selftest passes on Xvfb.

The build takes about 40 s on this 2-core machine, so it runs once per session and every test
here uses the same dist/chimera. Size and start time are reported by bench/cold_start.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture(scope="module")
def executable() -> Iterator[Path]:
    env = dict(os.environ, PYTHON=sys.executable)
    build = subprocess.run([str(ROOT / "scripts" / "build-exe")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    exe = ROOT / "dist" / ("chimera.exe" if sys.platform == "win32" else "chimera")
    assert exe.is_file() and os.access(exe, os.X_OK)
    yield exe


def test_the_one_file_executable_passes_its_selftest(executable: Path, x_display: str) -> None:
    result = subprocess.run([str(executable), "--selftest"], env=dict(os.environ,
                            DISPLAY=x_display), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "selftest ok" in result.stdout


def test_the_executable_reports_its_version_and_refuses_bad_flags(executable: Path) -> None:
    version = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("chimera ")
    bad = subprocess.run([str(executable), "--no-such-flag"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_the_executable_without_a_display_says_so_in_one_line(executable: Path,
                                                              tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run([str(executable), "--data-dir", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "display" in result.stderr.lower()
