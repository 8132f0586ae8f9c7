"""The team CA over real HTTPS on loopback: a `serve` process, real clients, hostile requests.

One CA is made with ``chimera-identity init`` and served by ``chimera-identity serve`` for the
whole module (a subprocess on a free port of 127.0.0.1, killed at the end). Invites are made
in-process on the same state file, as an admin's ``invite`` would while ``serve`` runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from chimera_tk.config import Config, TeamSettings, load_config
from chimera_tk.errors import UserError
from chimera_tk.identity.authority import Authority
from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.pki.certs import fingerprint_sha256, load_pem_chain, verify_client_chain
from chimera_tk.pki.commands import new_certificate
from chimera_tk.pki.enroll import enroll_with_invite
from chimera_tk.pki.identity import Identity, certificate_user_id, load_identity
from chimera_tk.pki.invite import DAMAGED, Invite, encode_invite, parse_invite
from chimera_tk.pki.keys import build_csr, csr_to_pem, generate_private_key
from chimera_tk.profiles import ProfilePaths, profile_paths

IDENTITY_CLI = [sys.executable, "-m", "chimera_tk.identity.cli"]
CHIMERA = [sys.executable, "-m", "chimera_tk"]
IDENTITY_FILES = ("42.pem", "42_crt.pem", "ca_bundle.pem")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningCA:
    url: str
    directory: Path
    root_pem: Path
    session: requests.Session

    def invite(self, user_id: int, name: str = "", *, valid_for: timedelta = timedelta(hours=1),
               made_at: datetime | None = None) -> str:
        authority = (Authority.open(self.directory, clock=lambda: made_at) if made_at
                     else Authority.open(self.directory))
        try:
            return authority.create_invite(user_id, name, valid_for)
        finally:
            authority.close()

    def post(self, path: str, body: bytes | dict[str, object]) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.session.post(self.url + path, data=data, verify=str(self.root_pem),
                                 headers={"Content-Type": "application/json"}, timeout=10)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, verify=str(self.root_pem), timeout=10)

    def token(self, user_id: int) -> str:
        secret = parse_invite(self.invite(user_id)).secret
        answer = self.post("/enroll/invite", {"secret": secret, "id": user_id})
        assert answer.status_code == 200, answer.text
        return answer.json()["ott"]


@contextlib.contextmanager
def running_ca(base: Path, *init_options: str) -> Iterator[RunningCA]:
    """``chimera-identity init`` in ``base/ca``, then ``serve`` on a free loopback port until
    the block ends (test files share this one way of running the CA)."""
    directory, port = base / "ca", free_port()
    url = f"https://127.0.0.1:{port}"
    init = subprocess.run([*IDENTITY_CLI, "init", "--dir", str(directory), "--url", url,
                           *init_options], capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    with serving_ca(directory, port, base / "serve.log") as running:
        yield running


@contextlib.contextmanager
def serving_ca(directory: Path, port: int, log_path: Path) -> Iterator[RunningCA]:
    """``chimera-identity serve`` for an existing CA folder on ``port``, until the block ends."""
    url = f"https://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*IDENTITY_CLI, "serve", "--dir", str(directory), "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    session = requests.Session()
    session.trust_env = False
    running = RunningCA(url, directory, AuthorityFiles(directory).root_certificate, session)
    try:
        _wait_for_health(running, server, log_path)
        yield running
    finally:
        session.close()
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def team_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCA]:
    with running_ca(tmp_path_factory.mktemp("team"), "--name", "Test team") as running:
        yield running


def _wait_for_health(ca: RunningCA, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"serve exited early:\n{log_path.read_text()}")
        try:
            if ca.get("/health").json() == {"status": "ok"}:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    pytest.fail(f"serve did not answer /health:\n{log_path.read_text()}")


def run_chimera(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The inherited environment keeps REQUESTS_CA_BUNDLE: enrollment must not be swayed by it.
    return subprocess.run([*CHIMERA, "--data-dir", str(data_dir), "--profile", "alice", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def identity_files(paths: ProfilePaths) -> list[str]:
    return sorted(p.name for p in paths.root.glob("*.pem"))


@pytest.fixture
def fresh_profile(tmp_path: Path) -> ProfilePaths:
    return profile_paths("alice", tmp_path / "data").ensure()


# --- the whole road, as a user walks it ----------------------------------------------------------

def test_chimera_new_with_an_invite_gets_a_certificate(team_ca: RunningCA, tmp_path: Path) -> None:
    code = team_ca.invite(42, "Alice")
    data_dir = tmp_path / "data"
    result = run_chimera(data_dir, "--new", "--invite", code)
    assert result.returncode == 0, result.stderr
    assert "id 42 (Alice)" in result.stdout and "valid until" in result.stdout

    profile = data_dir / "profiles" / "alice"
    for name in IDENTITY_FILES:
        assert (profile / name).stat().st_mode & 0o777 == 0o600, name
    chain = load_pem_chain((profile / "42_crt.pem").read_bytes())
    (root,) = load_pem_chain((profile / "ca_bundle.pem").read_bytes())
    assert root.public_bytes(Encoding.PEM) == team_ca.root_pem.read_bytes()
    leaf = chain[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "42"
    alt_names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt_names.get_values_for_type(x509.DNSName) == ["42"]
    verify_client_chain(leaf, chain[1:], root)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == timedelta(hours=240, minutes=1)

    team = load_config(profile / "config.toml").team
    assert (team.identity_url, team.ca_url) == (team_ca.url, team_ca.url)
    identity = load_identity(profile_paths("alice", data_dir))
    assert identity is not None
    assert (identity.user_id, identity.serial) == (42, leaf.serial_number)
    assert f"{leaf.serial_number:x}" in result.stdout


def test_a_reused_invite_is_refused_and_writes_nothing(team_ca: RunningCA, tmp_path: Path) -> None:
    code = team_ca.invite(42)
    first = profile_paths("first", tmp_path).ensure()
    assert new_certificate(first, Config(), invite=code, stdout=io.StringIO()) == 0
    second = profile_paths("second", tmp_path).ensure()
    with pytest.raises(UserError) as raised:
        new_certificate(second, Config(), invite=code, stdout=io.StringIO())
    assert "already been used" in str(raised.value)
    assert identity_files(second) == []
    assert not second.config_file.exists()


def test_chimera_new_with_a_reused_invite_says_so_in_one_line(team_ca: RunningCA,
                                                              tmp_path: Path) -> None:
    code = team_ca.invite(42)
    assert run_chimera(tmp_path / "one", "--new", "--invite", code).returncode == 0
    result = run_chimera(tmp_path / "two", "--new", "--invite", code)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"chimera: the identity provider at {team_ca.url} refused the invite: this invite has "
        "already been used; ask your team admin for a new one"]
    assert identity_files(profile_paths("alice", tmp_path / "two")) == []


def test_a_tampered_root_fingerprint_is_refused_before_the_secret_is_sent(
        team_ca: RunningCA, fresh_profile: ProfilePaths) -> None:
    invite = parse_invite(team_ca.invite(42))
    forged = Invite(url=invite.url, root_fingerprint="0" * 64, secret=invite.secret,
                    user_id=42, name="")
    with pytest.raises(UserError) as raised:
        new_certificate(fresh_profile, Config(), invite=encode_invite(forged))
    assert "man-in-the-middle" in str(raised.value)
    assert identity_files(fresh_profile) == []
    assert new_certificate(fresh_profile, Config(), invite=encode_invite(invite),
                           stdout=io.StringIO()) == 0  # the secret was never spent


def test_an_expired_invite_is_refused(team_ca: RunningCA, fresh_profile: ProfilePaths) -> None:
    code = team_ca.invite(42, made_at=datetime.now(UTC) - timedelta(hours=2),
                          valid_for=timedelta(hours=1))
    with pytest.raises(UserError, match="this invite has expired"):
        new_certificate(fresh_profile, Config(), invite=code)
    assert identity_files(fresh_profile) == []


def test_a_damaged_invite_is_one_clear_line(tmp_path: Path) -> None:
    result = run_chimera(tmp_path, "--new", "--invite", "chimera-invite:eyJ2Ijox")
    assert result.returncode == 1
    assert result.stderr.strip() == f"chimera: {DAMAGED}"


def test_without_an_invite_and_no_terminal_the_user_is_told_what_to_run(
        fresh_profile: ProfilePaths) -> None:
    with pytest.raises(UserError, match="--invite"):
        new_certificate(fresh_profile, Config(), stdin=io.StringIO(""))


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_invite_is_asked_for(team_ca: RunningCA,
                                               fresh_profile: ProfilePaths) -> None:
    stdout = io.StringIO()
    stdin = FakeTerminal(team_ca.invite(42, "Alice") + "\n")
    assert new_certificate(fresh_profile, Config(), stdin=stdin, stdout=stdout) == 0
    assert "Invite code:" in stdout.getvalue()
    assert load_identity(fresh_profile).user_id == 42


def test_a_configured_lifetime_is_requested(team_ca: RunningCA,
                                            fresh_profile: ProfilePaths) -> None:
    config = Config(team=TeamSettings(cert_lifetime_hours=24))
    new_certificate(fresh_profile, config, invite=team_ca.invite(42), stdout=io.StringIO())
    identity = load_identity(fresh_profile)
    assert identity.not_after - identity.not_before == timedelta(hours=24, minutes=1)
    assert load_config(fresh_profile.config_file).team.cert_lifetime_hours == 24


def test_an_unreachable_provider_is_named_in_plain_words(fresh_profile: ProfilePaths) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    invite = Invite(url=url, root_fingerprint="ab" * 32, secret="A" * 43, user_id=42)
    with pytest.raises(UserError) as raised:
        new_certificate(fresh_profile, Config(), invite=encode_invite(invite))
    assert str(raised.value) == (f"cannot reach the identity provider at {url}: "
                                 "connection refused")


def test_a_silent_server_times_out(fresh_profile: ProfilePaths) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the TCP connection, never speaks TLS
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        invite = Invite(url=url, root_fingerprint="ab" * 32, secret="A" * 43, user_id=42)
        with pytest.raises(UserError) as raised:
            enroll_with_invite(fresh_profile, invite, timeout=(0.3, 0.3))
    assert str(raised.value) == (f"cannot reach the identity provider at {url}: "
                                 "no answer within 0.3 s")


def test_issued_certificates_work_for_mutual_tls(team_ca: RunningCA, tmp_path: Path) -> None:
    alice = profile_paths("alice", tmp_path).ensure()
    bob = profile_paths("bob", tmp_path).ensure()
    new_certificate(alice, Config(), invite=team_ca.invite(42), stdout=io.StringIO())
    new_certificate(bob, Config(), invite=team_ca.invite(43), stdout=io.StringIO())
    seen_by_bob: list[int] = []
    left, right = socket.socketpair()

    def bob_serves() -> None:
        with tls_context(load_identity(bob), ssl.PROTOCOL_TLS_SERVER).wrap_socket(
                right, server_side=True) as tls:
            seen_by_bob.append(certificate_user_id(x509.load_der_x509_certificate(
                tls.getpeercert(binary_form=True))))

    thread = threading.Thread(target=bob_serves)
    thread.start()
    client = tls_context(load_identity(alice), ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False  # the LAN checks the id from the certificate instead
    with client.wrap_socket(left) as tls:
        peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        assert tls.version() == "TLSv1.3"
    thread.join(timeout=10)
    assert certificate_user_id(peer) == 43
    assert seen_by_bob == [42]


def tls_context(identity: Identity, protocol: int) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(identity.cert_path, identity.key_path)
    context.load_verify_locations(identity.ca_bundle_path)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


# --- the HTTP API ------------------------------------------------------------------------------

def test_health_and_roots(team_ca: RunningCA) -> None:
    assert team_ca.get("/health").json() == {"status": "ok"}
    roots = team_ca.get("/roots")
    assert roots.status_code == 200
    (pem,) = roots.json()["crts"]
    assert pem.encode() == team_ca.root_pem.read_bytes()
    fingerprint = fingerprint_sha256(load_pem_chain(pem.encode())[0])
    assert team_ca.get(f"/root/{fingerprint}").json()["ca"] == pem


def test_sign_answers_like_step_ca(team_ca: RunningCA) -> None:
    csr = csr_to_pem(build_csr(generate_private_key(), 77))
    answer = team_ca.post("/1.0/sign", {"csr": csr, "ott": team_ca.token(77)})
    assert answer.status_code == 201
    body = answer.json()
    assert body["certChain"] == [body["crt"], body["ca"]]
    leaf = x509.load_pem_x509_certificate(body["crt"].encode())
    assert certificate_user_id(leaf) == 77


def test_a_replayed_token_is_401(team_ca: RunningCA) -> None:
    token = team_ca.token(77)
    first = team_ca.post("/1.0/sign", {"csr": csr_to_pem(build_csr(generate_private_key(), 77)),
                                       "ott": token})
    assert first.status_code == 201
    again = team_ca.post("/1.0/sign", {"csr": csr_to_pem(build_csr(generate_private_key(), 77)),
                                       "ott": token})
    assert again.status_code == 401
    assert again.json() == {"status": 401, "message": "this token has already been used"}


def test_a_token_for_one_id_does_not_sign_a_csr_for_another(team_ca: RunningCA) -> None:
    csr = csr_to_pem(build_csr(generate_private_key(), 78))
    answer = team_ca.post("/1.0/sign", {"csr": csr, "ott": team_ca.token(77)})
    assert answer.status_code == 403
    assert "common name does not match" in answer.json()["message"]


def test_an_invite_for_one_id_is_refused_for_another(team_ca: RunningCA) -> None:
    secret = parse_invite(team_ca.invite(77)).secret
    answer = team_ca.post("/enroll/invite", {"secret": secret, "id": 78})
    assert answer.status_code == 403
    assert answer.json()["message"] == "this invite was made for another user id"


HOSTILE_STRINGS = ["'; rm -rf /", "' OR 1=1 --", "'; DROP TABLE certificates; --",
                   "$(reboot)", "`id`", "../../etc/passwd", "\x00", "٤٢", "🦊" * 100,
                   "9" * 10_000, "<script>alert(1)</script>"]
SECRET = "A" * 43


def enroll_bodies() -> list[bytes]:
    bodies = [b"", b"not json", b"[]", b"null", b'"text"', b"{", b"\xff\xfe\xfa",
              b"[" * 60_000, b'{"secret": "' + b"A" * 60_000 + b'", "id": 1}',
              b'{"secret": "AAAA", "id": ' + b"9" * 10_000 + b"}",
              b'{"secret": "AAAA", "id": 1e400}', b'{"secret": "AAAA", "id": NaN}']
    values: list[object] = [*HOSTILE_STRINGS, None, True, -1, 0, 1.5, 2**63, 2**200, [1], {}]
    bodies += [json.dumps({"secret": SECRET, "id": value}).encode() for value in values]
    bodies += [json.dumps({"secret": value, "id": 42}).encode() for value in values]
    return bodies


def sign_bodies() -> list[bytes]:
    csr = csr_to_pem(build_csr(generate_private_key(), 42))
    values: list[object] = [*HOSTILE_STRINGS, None, 42, [], {}]
    bodies = [json.dumps({"csr": value, "ott": "x.y.z"}).encode() for value in values]
    bodies += [json.dumps({"csr": csr, "ott": value}).encode() for value in values]
    bodies += [json.dumps({"csr": csr, "ott": "x.y.z", "notAfter": value}).encode()
               for value in values if value]
    bodies += [b"{}", b"[]", b"\x00" * 1000, json.dumps({"csr": csr}).encode()]
    return bodies


def short_id(body: bytes) -> str:
    return repr(body[:40]) + f"...{len(body)}"


@pytest.mark.parametrize("body", enroll_bodies(), ids=short_id)
def test_hostile_enroll_requests_get_a_clean_4xx(team_ca: RunningCA, body: bytes) -> None:
    assert_clean_refusal(team_ca.post("/enroll/invite", body))


@pytest.mark.parametrize("body", sign_bodies(), ids=short_id)
def test_hostile_sign_requests_get_a_clean_4xx(team_ca: RunningCA, body: bytes) -> None:
    assert_clean_refusal(team_ca.post("/1.0/sign", body))


def test_a_huge_body_is_413(team_ca: RunningCA) -> None:
    body = b'{"csr": "' + b"A" * 200_000 + b'"}'
    assert_clean_refusal(team_ca.post("/1.0/sign", body), status=413)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/1.0/sign", 405), ("GET", "/nothing-here", 404), ("DELETE", "/roots", 405),
    ("GET", "/root/" + "0" * 64, 404), ("GET", "/enroll/invite", 405),
])
def test_unknown_routes_and_methods_are_json_errors(team_ca: RunningCA, method: str, path: str,
                                                    status: int) -> None:
    answer = team_ca.session.request(method, team_ca.url + path, verify=str(team_ca.root_pem),
                                     timeout=10)
    assert_clean_refusal(answer, status=status)


def test_the_state_survives_hostile_requests(team_ca: RunningCA) -> None:
    for text in HOSTILE_STRINGS[:3]:
        team_ca.post("/enroll/invite", {"secret": text, "id": 42})
    with sqlite3.connect(AuthorityFiles(team_ca.directory).state) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"invites", "certificates", "used_tokens"} <= tables
    assert team_ca.get("/health").json() == {"status": "ok"}


def assert_clean_refusal(answer: requests.Response, status: int | None = None) -> None:
    assert 400 <= answer.status_code < 500, answer.text
    if status is not None:
        assert answer.status_code == status
    body = answer.json()
    assert body["status"] == answer.status_code
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in answer.text
