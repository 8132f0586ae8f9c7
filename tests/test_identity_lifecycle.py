"""Renew, revoke and the CRL over real HTTPS: a ``serve`` process on loopback, real clients.

Certificates are short-lived (10 minutes, via ``notAfter``) so that "near expiry" is real; an
expired one is made in-process with the CA's clock moved back, on the same state file.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509

from chimera_tk.config import Config, TeamSettings, save_config
from chimera_tk.errors import UserError
from chimera_tk.identity.authority import Authority
from chimera_tk.identity.cli import main as identity_main
from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.pki import commands
from chimera_tk.pki.ca_client import SignedCertificate
from chimera_tk.pki.certs import load_pem_chain
from chimera_tk.pki.enroll import write_identity_files
from chimera_tk.pki.identity import Identity, load_identity
from chimera_tk.pki.invite import parse_invite
from chimera_tk.pki.keys import build_csr, csr_to_pem, generate_private_key, private_key_to_pem
from chimera_tk.pki.lifecycle import renew_certificate, renew_if_due, revoke_certificate
from chimera_tk.profiles import ProfilePaths, profile_paths
from tests.test_identity_server import (
    HOSTILE_STRINGS,
    RunningCA,
    assert_clean_refusal,
    free_port,
    run_chimera,
    running_ca,
)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCA]:
    with running_ca(tmp_path_factory.mktemp("lifecycle")) as running:
        yield running


_next_id = iter(range(5000, 6000))


def enrolled(ca: RunningCA, tmp_path: Path, *, profile: str | None = None,
             issued_ago: timedelta | None = None) -> tuple[ProfilePaths, Config, Identity]:
    """A profile with a 10-minute certificate and the CA url configured.

    Fresh from the running CA, or, with ``issued_ago``, signed in-process on the same state
    file by the CA with its clock moved back (to be near expiry, or expired, now).
    """
    user_id = next(_next_id)
    paths = profile_paths(profile or f"p{user_id}", tmp_path / "data").ensure()
    key = generate_private_key()
    csr = csr_to_pem(build_csr(key, user_id))
    if issued_ago is None:
        answer = ca.post("/1.0/sign", {"csr": csr, "ott": ca.token(user_id), "notAfter": "10m"})
        assert answer.status_code == 201, answer.text
        signed = SignedCertificate(chain=tuple(x509.load_pem_x509_certificate(pem.encode())
                                               for pem in answer.json()["certChain"]))
    else:
        past = datetime.now(UTC) - issued_ago
        authority = Authority.open(ca.directory, clock=lambda: past)
        try:
            invite = authority.create_invite(user_id, "", timedelta(hours=1))
            token = authority.redeem_invite(parse_invite(invite).secret, user_id)
            issued = authority.sign(csr, token, "10m")
        finally:
            authority.close()
        signed = SignedCertificate(chain=(issued.leaf, issued.intermediate))
    root = load_pem_chain(ca.root_pem.read_bytes())[0]
    identity = write_identity_files(paths, user_id, private_key_to_pem(key), signed, root)
    config = Config(team=TeamSettings(ca_url=ca.url, identity_url=ca.url))
    save_config(paths.config_file, config)
    return paths, config, identity


def mtls(ca: RunningCA, identity: Identity, path: str, body: dict[str, object] | None = None,
         ) -> requests.Response:
    return ca.session.post(ca.url + path, json=body, verify=str(ca.root_pem), timeout=10,
                           cert=(str(identity.cert_path), str(identity.key_path)))


def fetch_crl(ca: RunningCA) -> x509.CertificateRevocationList:
    answer = ca.get("/crl")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(answer.content)


def crl_reason(ca: RunningCA, serial: int) -> x509.ReasonFlags | None:
    entry = fetch_crl(ca).get_revoked_certificate_by_serial_number(serial)
    if entry is None:
        return None
    return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason


# --- renew -------------------------------------------------------------------------------------

def test_renew_near_expiry_keeps_the_key_and_extends_the_validity(ca: RunningCA,
                                                                  tmp_path: Path) -> None:
    fresh_paths, fresh_config, fresh = enrolled(ca, tmp_path)
    assert not renew_if_due(fresh_paths, fresh_config)  # 10 minutes left of 11: not due yet
    assert load_identity(fresh_paths).serial == fresh.serial
    paths, config, old = enrolled(ca, tmp_path, issued_ago=timedelta(minutes=8))
    key_before = old.key_path.read_bytes()
    assert old.renewal_due()  # 2 minutes left
    assert renew_if_due(paths, config)
    new = load_identity(paths)
    assert new.user_id == old.user_id and new.serial != old.serial
    assert new.not_after > old.not_after
    assert new.not_after - new.not_before == old.not_after - old.not_before  # lifetime kept
    assert old.key_path.read_bytes() == key_before
    assert old.cert_path.stat().st_mode & 0o777 == 0o600


def test_chimera_renew_as_a_command(ca: RunningCA, tmp_path: Path) -> None:
    paths, _, old = enrolled(ca, tmp_path, profile="alice")
    result = run_chimera(tmp_path / "data", "--renew")
    assert result.returncode == 0, result.stderr
    new = load_identity(paths)
    assert f"serial {old.serial:x} replaced by {new.serial:x}" in result.stdout


def test_renew_after_revoke_is_refused(ca: RunningCA, tmp_path: Path) -> None:
    paths, config, identity = enrolled(ca, tmp_path)
    revoke_certificate(paths, config, 4, "superseded by a new laptop")
    with pytest.raises(UserError) as raised:
        renew_certificate(paths, config)
    assert str(raised.value) == (f"the team CA refused to renew certificate serial "
                                 f"{identity.serial:x}: this certificate has been revoked; get a "
                                 "new one with an invite")
    assert mtls(ca, identity, "/1.0/renew").status_code == 401
    assert load_identity(paths).serial == identity.serial  # the file was left alone


def test_renew_of_an_expired_certificate_is_401(ca: RunningCA, tmp_path: Path) -> None:
    paths, config, identity = enrolled(ca, tmp_path, issued_ago=timedelta(hours=2))
    answer = mtls(ca, identity, "/1.0/renew")
    assert_clean_refusal(answer, status=401)
    assert "expired" in answer.json()["message"]
    with pytest.raises(UserError, match=r"expired on .* cannot be renewed; get a new one"):
        renew_certificate(paths, config)


def test_renew_without_a_client_certificate_is_refused(ca: RunningCA) -> None:
    assert_clean_refusal(ca.post("/1.0/renew", b""), status=400)


def test_an_unreachable_ca_is_one_clear_line(ca: RunningCA, tmp_path: Path) -> None:
    paths, _, _ = enrolled(ca, tmp_path)
    url = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(UserError) as raised:
        renew_certificate(paths, Config(team=TeamSettings(ca_url=url)))
    assert str(raised.value) == f"cannot reach the team CA at {url}: connection refused"


# --- revoke and the CRL ------------------------------------------------------------------------

def test_revoking_someone_elses_certificate_is_refused(ca: RunningCA, tmp_path: Path) -> None:
    _, _, alice = enrolled(ca, tmp_path)
    _, _, bob = enrolled(ca, tmp_path)
    answer = mtls(ca, alice, "/1.0/revoke", {"serial": str(bob.serial), "reasonCode": 1,
                                             "reason": "mine now", "passive": True})
    assert_clean_refusal(answer, status=403)
    assert crl_reason(ca, bob.serial) is None
    assert mtls(ca, bob, "/1.0/renew").status_code == 201


def test_revoke_own_by_mutual_tls_then_in_the_crl_and_twice_is_400(ca: RunningCA,
                                                                   tmp_path: Path) -> None:
    _, _, identity = enrolled(ca, tmp_path)
    body = {"serial": str(identity.serial), "reasonCode": 1, "reason": "laptop stolen",
            "passive": True}
    first = mtls(ca, identity, "/1.0/revoke", body)
    assert (first.status_code, first.json()) == (200, {"status": "ok"})
    assert crl_reason(ca, identity.serial) is x509.ReasonFlags.key_compromise
    assert_clean_refusal(mtls(ca, identity, "/1.0/revoke", body), status=400)


def test_the_crl_is_signed_by_the_intermediate_and_fresh(ca: RunningCA, tmp_path: Path) -> None:
    paths, config, identity = enrolled(ca, tmp_path)
    revoke_certificate(paths, config, 9, "left the team")
    crl = fetch_crl(ca)
    intermediate = load_pem_chain(AuthorityFiles(ca.directory).intermediate_certificate
                                  .read_bytes())[0]
    assert crl.issuer == intermediate.subject
    assert crl.is_signature_valid(intermediate.public_key())
    now = datetime.now(UTC)
    assert now + timedelta(hours=1) < crl.next_update_utc <= now + timedelta(hours=6)
    assert crl_reason(ca, identity.serial) is x509.ReasonFlags.privilege_withdrawn
    pem = ca.get("/crl?pem")
    assert pem.text.startswith("-----BEGIN X509 CRL-----")
    assert x509.load_pem_x509_crl(pem.content).get_revoked_certificate_by_serial_number(
        identity.serial) is not None


def test_admin_token_revokes_and_is_bound_to_its_serial(ca: RunningCA, tmp_path: Path) -> None:
    _, _, alice = enrolled(ca, tmp_path)
    _, _, bob = enrolled(ca, tmp_path)
    authority = Authority.open(ca.directory)
    try:
        token = authority.revoke_token(alice.serial)
    finally:
        authority.close()
    wrong = ca.post("/1.0/revoke", {"serial": str(bob.serial), "ott": token, "reasonCode": 3})
    assert_clean_refusal(wrong, status=403)
    right = ca.post("/1.0/revoke", {"serial": str(alice.serial), "ott": token, "reasonCode": 3,
                                    "reason": "moved to another team", "passive": True})
    assert right.status_code == 200, right.text
    assert crl_reason(ca, alice.serial) is x509.ReasonFlags.affiliation_changed
    assert crl_reason(ca, bob.serial) is None


def test_revoke_without_proof_is_401(ca: RunningCA, tmp_path: Path) -> None:
    _, _, identity = enrolled(ca, tmp_path)
    assert_clean_refusal(ca.post("/1.0/revoke", {"serial": str(identity.serial)}), status=401)


def test_chimera_identity_revoke_and_list(ca: RunningCA, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, _, identity = enrolled(ca, tmp_path)
    assert identity_main(["revoke", "--dir", str(ca.directory), "--id", str(identity.user_id),
                          "--reason", "5", "--note", "project over"]) == 0
    assert f"Revoked serial {identity.serial:x}" in capsys.readouterr().out
    assert crl_reason(ca, identity.serial) is x509.ReasonFlags.cessation_of_operation
    assert identity_main(["list", "--dir", str(ca.directory)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if f"serial {identity.serial:x}" in line)
    assert "revoked" in line and "CessationOfOperation: project over" in line
    assert identity_main(["revoke", "--dir", str(ca.directory),
                          "--serial", f"{identity.serial:x}"]) == 1
    assert capsys.readouterr().err.strip() == (f"chimera-identity: serial {identity.serial:x}: "
                                               "this certificate is already revoked")


@pytest.mark.parametrize("args", [
    ["--serial", "'; rm -rf /"], ["--serial", "0"], ["--serial", "f" * 10_000],
    ["--id", "' OR 1=1 --"], ["--id", "42", "--reason", "7"], ["--id", "42", "--note", "\x1b[2J"],
    ["--id", "42", "--serial", "ab"], [],
])
def test_bad_identity_revoke_flags_exit_2(args: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        identity_main(["revoke", "--dir", "x", *args])
    assert exited.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def revoke_bodies(serial: int) -> list[dict[str, object]]:
    values: list[object] = [*HOSTILE_STRINGS, None, True, -1, 7, 11, 1.5, 2**200, [1], {}]
    bodies: list[dict[str, object]] = [{"serial": value} for value in values]
    bodies += [{"serial": str(serial), "reasonCode": value} for value in values]
    bodies += [{"serial": str(serial), "ott": value} for value in values if value is not None]
    bodies += [{"serial": str(serial), "reason": value}
               for value in ["\x00", "a\nb", "x" * 501, 42, [], {}]]
    bodies += [{"serial": str(serial), "passive": False}]
    return bodies


def test_hostile_revoke_requests_get_a_clean_4xx(ca: RunningCA, tmp_path: Path) -> None:
    _, _, identity = enrolled(ca, tmp_path)
    for body in revoke_bodies(identity.serial):
        answer = mtls(ca, identity, "/1.0/revoke", body)
        assert_clean_refusal(answer)
    for raw in [b"", b"[]", b"not json", b'{"serial": ' + b"9" * 10_000 + b"}"]:
        assert_clean_refusal(ca.post("/1.0/revoke", raw))
    assert crl_reason(ca, identity.serial) is None  # none of them revoked it


def test_an_injection_string_as_a_note_is_stored_verbatim(ca: RunningCA, tmp_path: Path) -> None:
    paths, config, identity = enrolled(ca, tmp_path)
    note = "'; DROP TABLE revocations; -- $(reboot) `id`"
    revoke_certificate(paths, config, 0, note)
    with sqlite3.connect(AuthorityFiles(ca.directory).state) as conn:
        stored = conn.execute("SELECT note FROM revocations WHERE serial = ?",
                              (str(identity.serial),)).fetchone()
    assert stored == (note,)


# --- chimera --revoke --------------------------------------------------------------------------

def test_chimera_revoke_non_interactively(ca: RunningCA, tmp_path: Path) -> None:
    _, _, identity = enrolled(ca, tmp_path, profile="alice")
    result = run_chimera(tmp_path / "data", "--revoke", "--reason", "1", "--note",
                         "laptop stolen", "--yes")
    assert result.returncode == 0, result.stderr
    assert f"serial {identity.serial:x}" in result.stdout
    assert crl_reason(ca, identity.serial) is x509.ReasonFlags.key_compromise
    again = run_chimera(tmp_path / "data", "--revoke", "--reason", "1", "--yes")
    assert again.returncode == 1
    assert len(again.stderr.strip().splitlines()) == 1
    assert "already revoked" in again.stderr


def test_chimera_revoke_without_a_terminal_needs_the_flags(ca: RunningCA, tmp_path: Path) -> None:
    _, _, identity = enrolled(ca, tmp_path, profile="alice")
    result = run_chimera(tmp_path / "data", "--revoke", "--reason", "1")
    assert result.returncode == 1
    assert result.stderr.strip() == ("chimera: without a terminal, --revoke needs --reason CODE "
                                     "--note TEXT --yes")
    assert crl_reason(ca, identity.serial) is None


@pytest.mark.parametrize("args", [["--reason", "7"], ["--reason", "'; rm -rf /"],
                                  ["--revoke", "--note", "a\nb"], ["--yes"]])
def test_bad_revoke_flags_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = run_chimera(tmp_path, *(["--revoke"] if "--revoke" not in args else []), *args) \
        if args != ["--yes"] else run_chimera(tmp_path, "--yes")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_chimera_revoke_asks_reason_note_and_confirmation(ca: RunningCA, tmp_path: Path) -> None:
    paths, config, identity = enrolled(ca, tmp_path)
    stdout = io.StringIO()
    declined = commands.revoke(paths, config, stdin=FakeTerminal("1\nlost\nno\n"), stdout=stdout)
    assert declined == 1 and crl_reason(ca, identity.serial) is None
    shown = stdout.getvalue()
    assert f"serial {identity.serial:x} ({identity.serial})" in shown
    assert " 1 - KeyCompromise" in shown and "10 - AACompromise" in shown
    assert " 7 - " not in shown
    assert commands.revoke(paths, config, stdin=FakeTerminal("1\nlost\nyes\n"),
                           stdout=io.StringIO()) == 0
    assert crl_reason(ca, identity.serial) is x509.ReasonFlags.key_compromise
