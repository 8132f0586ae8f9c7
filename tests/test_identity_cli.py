"""``chimera-identity`` as an admin types it: init, invite, list, and one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from chimera_tk import __version__
from chimera_tk.identity.cli import main
from chimera_tk.pki.invite import parse_invite

URL = "https://127.0.0.1:8443"


@pytest.fixture
def ca_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = tmp_path / "ca"
    assert main(["init", "--dir", str(directory), "--url", URL, "--name", "Test team"]) == 0
    capsys.readouterr()
    return directory


def test_init_reports_the_address_and_root_fingerprint(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--dir", str(tmp_path / "ca"), "--url", URL + "/"]) == 0
    out = capsys.readouterr().out
    assert f"address clients use:  {URL}\n" in out
    assert "root fingerprint:" in out
    assert (tmp_path / "ca" / "root_ca.crt").is_file()


def test_invite_prints_the_code_as_its_last_line(ca_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invite", "--dir", str(ca_dir), "--id", "42", "--name", "Alice",
                 "--valid-hours", "2"]) == 0
    last_line = capsys.readouterr().out.splitlines()[-1]
    invite = parse_invite(last_line)
    assert (invite.user_id, invite.name, invite.url) == (42, "Alice", URL)


def test_list_shows_open_invites_without_secrets(ca_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    main(["invite", "--dir", str(ca_dir), "--id", "42", "--name", "Alice"])
    secret = parse_invite(capsys.readouterr().out.splitlines()[-1]).secret
    assert main(["list", "--dir", str(ca_dir)]) == 0
    out = capsys.readouterr().out
    assert "Issued certificates (0)" in out and "Open invites (1)" in out
    assert "Alice" in out and secret not in out


@pytest.mark.parametrize("args", [
    ["init"],
    ["init", "--dir", "x", "--url", "http://127.0.0.1:8443"],
    ["init", "--dir", "x", "--url", "https://host:8443/path"],
    ["init", "--dir", "x", "--name", ""],
    ["invite", "--dir", "x", "--id", "042"],
    ["invite", "--dir", "x", "--id", "'; rm -rf /"],
    ["invite", "--dir", "x", "--id", "1" * 10_000],
    ["invite", "--dir", "x", "--id", "42", "--valid-hours", "0"],
    ["invite", "--dir", "x", "--id", "42", "--valid-hours", "nan"],
    ["invite", "--dir", "x", "--id", "42", "--name", "\x1b[2J"],
    ["frobnicate"],
])
def test_bad_flags_give_one_line_and_exit_2(args: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and len(err) < 300
    assert err.startswith("chimera-identity") and ": error: " in err


def test_init_never_overwrites_a_ca(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (ca_dir / "root_ca_key.pem").read_bytes()
    assert main(["init", "--dir", str(ca_dir), "--url", URL]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"chimera-identity: {ca_dir} already exists and is not empty; refusing to overwrite it "
        "(choose a new folder for the CA)"]
    assert (ca_dir / "root_ca_key.pem").read_bytes() == before


@pytest.mark.parametrize("command", [["invite", "--id", "42"], ["list"], ["serve"]])
def test_commands_on_a_folder_that_is_no_ca_say_how_to_make_one(
        tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command[0], "--dir", str(tmp_path / "nothing"), *command[1:]]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "chimera-identity init --dir" in err


def test_damaged_settings_are_refused_in_one_line(ca_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings = ca_dir / "config.json"
    settings.write_text(settings.read_text().replace(URL, "http://evil.example"))
    assert main(["list", "--dir", str(ca_dir)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bad settings" in err


def test_serve_with_a_bad_listen_address_is_one_line(ca_dir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--dir", str(ca_dir), "--listen", "localhost"]) == 1
    assert "--listen 'localhost' must be HOST:PORT" in capsys.readouterr().err


def test_without_a_command_it_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("init", "invite", "serve", "list"):
        assert command in out


def test_runs_as_a_python_module() -> None:
    result = subprocess.run([sys.executable, "-m", "chimera_tk.identity.cli", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"chimera-identity {__version__}"
