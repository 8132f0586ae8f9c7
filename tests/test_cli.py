"""The ``chimera`` command as a user runs it: real processes, exit codes, one-line errors."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chimera_tk import __version__
from chimera_tk.store.database import LATEST_VERSION, open_database

CHIMERA = [sys.executable, "-m", "chimera_tk"]


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHIMERA, *args], capture_output=True, text=True, timeout=timeout,
                          env=env or os.environ.copy(), stdin=subprocess.DEVNULL)


def no_display_env() -> dict[str, str]:
    env = os.environ.copy()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def assert_one_clean_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"chimera {__version__}"


def test_help_lists_the_profile_flags() -> None:
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--profile", "--data-dir", "--selftest", "--verbose", "--version"):
        assert flag in result.stdout


@pytest.mark.parametrize("args", [
    ["--no-such-flag"],
    ["--profile", "../../etc"],
    ["--profile"],
    ["--theme", "purple"],
    ["--data-dir", "/etc/hostname"],
    ["stray-argument"],
])
def test_bad_flags_and_values_give_one_line_and_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert_one_clean_line(result.stderr)
    assert result.stderr.startswith("chimera: error:")


def test_no_display_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    result = run("--data-dir", str(tmp_path), env=no_display_env())
    assert result.returncode == 1
    assert_one_clean_line(result.stderr)
    assert "cannot open a window" in result.stderr


def test_database_from_a_newer_version_is_refused_clearly(tmp_path: Path) -> None:
    db = tmp_path / "profiles" / "default" / "chimera.db"
    db.parent.mkdir(parents=True)
    open_database(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    result = run("--data-dir", str(tmp_path), env=no_display_env())
    assert result.returncode == 1
    assert_one_clean_line(result.stderr)
    assert "newer Chimera" in result.stderr


def test_bad_config_value_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "profiles" / "default" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[lan]\npeer_port = 'fifty'\n")
    result = run("--data-dir", str(tmp_path), env=no_display_env())
    assert result.returncode == 1
    assert_one_clean_line(result.stderr)
    assert "lan.peer_port" in result.stderr


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/proc/chimera-cannot-exist"  # root may write anywhere; /proc refuses even root
    else:
        tmp_path.chmod(0o500)
        target = str(tmp_path / "sub")
    result = run("--data-dir", target, env=no_display_env())
    assert result.returncode == 1
    assert_one_clean_line(result.stderr)


def test_identity_command_prints_help() -> None:
    result = subprocess.run([sys.executable, "-m", "chimera_tk.identity.cli"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "identity provider" in result.stdout


@pytest.mark.gui
def test_selftest_builds_shows_and_closes_the_window(x_display: str) -> None:
    result = run("--selftest")
    assert result.returncode == 0, result.stderr
    assert "selftest ok" in result.stdout


def _start_gui(data_dir: Path, profile: str = "default") -> subprocess.Popen[str]:
    return subprocess.Popen([*CHIMERA, "--data-dir", str(data_dir), "--profile", profile],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _wait_for_window(data_dir: Path, profile: str, process: subprocess.Popen[str],
                     times: int = 1) -> None:
    """Wait until the profile's log says its window was shown ``times`` times."""
    log = data_dir / "profiles" / profile / "logs" / "chimera.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count("window shown") >= times:
            return
        if process.poll() is not None:
            pytest.fail(f"chimera exited early: {process.communicate()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("the window never appeared")


@pytest.mark.gui
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_the_app_down_cleanly(x_display: str, tmp_path: Path,
                                           signum: signal.Signals) -> None:
    process = _start_gui(tmp_path)
    _wait_for_window(tmp_path, "default", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    log = (tmp_path / "profiles" / "default" / "logs" / "chimera.log").read_text()
    assert f"quitting: {signum.name}" in log
    # the lock went with the process: the profile opens again at once
    again = _start_gui(tmp_path)
    _wait_for_window(tmp_path, "default", again, times=2)
    again.terminate()
    assert again.wait(timeout=20) == 0


@pytest.mark.gui
def test_two_profiles_run_at_once_but_one_profile_only_once(x_display: str,
                                                            tmp_path: Path) -> None:
    alice = _start_gui(tmp_path, "alice")
    bob = _start_gui(tmp_path, "bob")
    try:
        _wait_for_window(tmp_path, "alice", alice)
        _wait_for_window(tmp_path, "bob", bob)
        second = run("--data-dir", str(tmp_path), "--profile", "alice")
        assert second.returncode == 1
        assert_one_clean_line(second.stderr)
        assert "already open" in second.stderr
    finally:
        for process in (alice, bob):
            process.terminate()
            process.wait(timeout=20)
    assert alice.returncode == 0 and bob.returncode == 0
