"""``chimera-identity step-ca``: handing a CA folder's signing to a real step-ca (no step-ca run
here; tests/test_step_ca.py and tests/test_client_suite_both_cas.py run one with this config)."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from chimera_tk.errors import UserError
from chimera_tk.identity.authority import Authority
from chimera_tk.identity.bootstrap import create_authority
from chimera_tk.identity.cli import main as identity_main
from chimera_tk.identity.layout import AuthorityFiles, load_settings

PROVIDER = "https://127.0.0.1:8443"
STEP_CA = "https://127.0.0.1:9443"


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    create_authority(directory, url=PROVIDER, team_name="Step team")
    return directory


def test_step_ca_command_writes_ca_json_from_the_folders_keys(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert identity_main(["step-ca", "--dir", str(folder), "--ca-url", STEP_CA + "/",
                          "--listen", "127.0.0.1:9443"]) == 0
    assert f"enrollment tokens now name the step-ca at {STEP_CA}" in capsys.readouterr().out
    files = AuthorityFiles(folder)
    settings = load_settings(files)
    assert (settings.url, settings.ca_url) == (PROVIDER, STEP_CA)
    config_path = folder / "step-ca" / "ca.json"
    assert config_path.stat().st_mode & 0o777 == 0o600
    config = json.loads(config_path.read_text())
    assert (config["root"], config["crt"], config["key"]) == (
        str(files.root_certificate), str(files.intermediate_certificate),
        str(files.intermediate_key))
    assert config["address"] == "127.0.0.1:9443"
    assert "127.0.0.1" in config["dnsNames"]
    [provisioner] = config["authority"]["provisioners"]
    assert provisioner["type"] == "JWK" and provisioner["name"] == settings.provisioner_name
    assert provisioner["key"] == json.loads(files.provisioner_public_jwk.read_text())
    assert provisioner["key"]["kid"] == settings.provisioner_kid
    assert config["authority"]["claims"] == {"minTLSCertDuration": "5m",
                                             "maxTLSCertDuration": "264h",
                                             "defaultTLSCertDuration": "240h"}
    database = Path(config["db"]["dataSource"])
    assert database.parent.is_dir() and database.parent.stat().st_mode & 0o777 == 0o700
    assert database.is_relative_to(folder)
    authority = Authority.open(folder)
    try:
        token = authority.enrollment_token(42)
    finally:
        authority.close()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == f"{STEP_CA}/1.0/sign" and claims["sub"] == "42"
    assert jwt.get_unverified_header(token)["kid"] == settings.provisioner_kid


def test_listen_defaults_to_all_addresses_on_the_step_ca_port(folder: Path) -> None:
    assert identity_main(["step-ca", "--dir", str(folder), "--ca-url", STEP_CA]) == 0
    assert json.loads((folder / "step-ca" / "ca.json").read_text())["address"] == ":9443"


def test_the_providers_own_address_is_refused_and_nothing_changes(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert identity_main(["step-ca", "--dir", str(folder), "--ca-url", PROVIDER]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"chimera-identity: {PROVIDER} is the identity provider's own address; "
                   "step-ca needs another port or host")
    assert load_settings(AuthorityFiles(folder)).ca_url == ""
    assert not (folder / "step-ca").exists()


@pytest.mark.parametrize("args", [["--ca-url", "http://127.0.0.1:9443"],
                                  ["--ca-url", "https://x/path"], ["--ca-url", "'; rm -rf /"],
                                  []])
def test_bad_step_ca_flags_exit_2_in_one_line(folder: Path, args: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        identity_main(["step-ca", "--dir", str(folder), *args])
    assert exited.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert load_settings(AuthorityFiles(folder)).ca_url == ""


def test_a_missing_folder_is_one_clear_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert identity_main(["step-ca", "--dir", str(tmp_path / "nope"), "--ca-url", STEP_CA]) == 1
    assert "is not a CA folder" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


def test_settings_from_before_step_ca_support_still_load(folder: Path) -> None:
    files = AuthorityFiles(folder)
    raw = json.loads(files.settings.read_text())
    raw.pop("ca_url")
    files.settings.write_text(json.dumps(raw))
    assert load_settings(files).ca_url == ""
    authority = Authority.open(folder)
    try:
        assert authority.enrollment_audience == f"{PROVIDER}/1.0/sign"
    finally:
        authority.close()


def test_a_damaged_ca_url_in_the_settings_is_refused(folder: Path) -> None:
    files = AuthorityFiles(folder)
    raw = json.loads(files.settings.read_text())
    files.settings.write_text(json.dumps({**raw, "ca_url": "ftp://elsewhere"}))
    with pytest.raises(UserError, match="bad settings: 'ftp://elsewhere' is not an https"):
        load_settings(files)
