"""``chimera --variables`` as a subprocess: flags, validation, config.toml, one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

from chimera_tk.config import load_config

CHIMERA = [sys.executable, "-m", "chimera_tk"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHIMERA, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=os.environ.copy())


def test_variables_from_flags_are_written_to_config_toml(tmp_path: Path) -> None:
    result = _run("--data-dir", str(tmp_path), "--variables", "--api-id", "12345",
                  "--api-hash", "0123456789ABCDEF0123456789abcdef",
                  "--identity-url", "https://10.0.0.5:8443", "--ca-url", "",
                  "--broadcast", "10.0.0.255")
    assert result.returncode == 0, result.stderr
    config = load_config(tmp_path / "profiles" / "default" / "config.toml")
    assert (config.telegram.api_id, config.telegram.api_hash) == (
        12345, "0123456789abcdef0123456789abcdef")
    assert config.team.identity_url == "https://10.0.0.5:8443"
    assert config.lan.broadcast_addresses == ("10.0.0.255",)
    assert not list(tmp_path.rglob("*.py"))  # the seed wrote a Python file; we do not


def test_bad_variables_are_refused_in_one_line(tmp_path: Path) -> None:
    for args in (["--api-id", "abc"], ["--api-id", "1", "--api-hash", "short"],
                 ["--api-id", "1", "--api-hash", "0" * 32, "--identity-url", "http://x",
                  "--ca-url", "", "--broadcast", ""],
                 ["--api-id", "1", "--api-hash", "0" * 32, "--identity-url", "",
                  "--ca-url", "", "--broadcast", "not-an-ip"]):
        result = _run("--data-dir", str(tmp_path), "--variables", *args)
        assert result.returncode == 1, args
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_variables_without_a_terminal_names_the_missing_flag(tmp_path: Path) -> None:
    result = _run("--data-dir", str(tmp_path), "--variables")
    assert result.returncode == 1
    assert "--api-id" in result.stderr
