"""The team CA without HTTP: what init makes, how invites and tokens behave, what gets signed."""

import hashlib
import json
import socket
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chimera_tk.errors import UserError
from chimera_tk.identity import bootstrap
from chimera_tk.identity.authority import ApiError, Authority, secret_digest
from chimera_tk.identity.bootstrap import create_authority, default_lan_address
from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.identity.state import AuthorityState
from chimera_tk.identity.tokens import issue_token, jwk_thumbprint
from chimera_tk.pki.certs import fingerprint_sha256, load_pem_chain, verify_client_chain
from chimera_tk.pki.identity import certificate_user_id
from chimera_tk.pki.invite import b64url_encode, parse_invite
from chimera_tk.pki.keys import build_csr, csr_to_pem, generate_private_key, load_private_key

URL = "https://127.0.0.1:8443"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca") / "team-ca"
    create_authority(directory, url=URL, team_name="Test team")
    return directory


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def authority(ca_dir: Path, clock: Clock) -> Iterator[Authority]:
    opened = Authority.open(ca_dir, clock=clock)
    yield opened
    opened.close()


def csr_for(user_id: int | str, alt_names: list[str] | None = None,
            key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None) -> str:
    if alt_names is None and isinstance(user_id, int):
        return csr_to_pem(build_csr(key or generate_private_key(), user_id))
    key = key or generate_private_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(user_id))]))
    if alt_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in alt_names]), critical=False)
    return csr_to_pem(builder.sign(key, hashes.SHA256()))


def token_for(authority: Authority, user_id: int = 42) -> str:
    code = authority.create_invite(user_id, "Alice", timedelta(hours=1))
    return authority.redeem_invite(parse_invite(code).secret, user_id)


# --- init --------------------------------------------------------------------------------------

def test_init_makes_a_private_folder_with_private_keys(ca_dir: Path) -> None:
    files = AuthorityFiles(ca_dir)
    assert ca_dir.stat().st_mode & 0o777 == 0o700
    for key in (files.root_key, files.intermediate_key, files.provisioner_key, files.server_key):
        assert key.stat().st_mode & 0o777 == 0o600, key
        assert isinstance(load_private_key(key), ec.EllipticCurvePrivateKey)
        assert isinstance(load_private_key(key).curve, ec.SECP256R1)
    assert files.state.stat().st_mode & 0o777 == 0o600
    assert json.loads(files.settings.read_text())["url"] == URL
    assert not [p for p in ca_dir.parent.iterdir() if p.name.startswith(".")]


def test_root_and_intermediate_have_the_expected_shape(authority: Authority) -> None:
    root, intermediate = authority.root, authority.intermediate
    root_life = root.not_valid_after_utc - root.not_valid_before_utc
    assert timedelta(days=3650) <= root_life <= timedelta(days=3660)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    inter_life = intermediate.not_valid_after_utc - intermediate.not_valid_before_utc
    assert timedelta(days=1825) <= inter_life <= timedelta(days=1830)
    assert intermediate.issuer == root.subject
    intermediate.verify_directly_issued_by(root)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)


def test_server_certificate_names_the_url_host_and_chains_to_the_root(ca_dir: Path,
                                                                      authority: Authority) -> None:
    server, intermediate = load_pem_chain(AuthorityFiles(ca_dir).server_certificate.read_bytes())
    alt_names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in alt_names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert intermediate == authority.intermediate
    server.verify_directly_issued_by(intermediate)


def test_server_certificate_is_reissued_when_the_host_changes(tmp_path: Path) -> None:
    create_authority(tmp_path / "ca", url="https://ca.team.example:9443", team_name="T")
    files = AuthorityFiles(tmp_path / "ca")
    authority = Authority.open(files.root)
    try:
        assert not authority.ensure_server_certificate()
        server = load_pem_chain(files.server_certificate.read_bytes())[0]
        alt_names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert alt_names.get_values_for_type(x509.DNSName) == ["ca.team.example"]
        settings = json.loads(files.settings.read_text())
        files.settings.write_text(json.dumps({**settings, "url": "https://10.1.2.3:9443"}))
    finally:
        authority.close()
    moved = Authority.open(files.root)
    try:
        assert moved.ensure_server_certificate()
        assert not moved.ensure_server_certificate()
    finally:
        moved.close()


def test_provisioner_kid_is_the_rfc7638_thumbprint(ca_dir: Path, authority: Authority) -> None:
    files = AuthorityFiles(ca_dir)
    numbers = load_private_key(files.provisioner_key).public_key().public_numbers()
    x = b64url_encode(numbers.x.to_bytes(32, "big"))
    y = b64url_encode(numbers.y.to_bytes(32, "big"))
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'.encode()
    expected = b64url_encode(hashlib.sha256(canonical).digest())
    assert authority.settings.provisioner_kid == expected
    public = json.loads(files.provisioner_public_jwk.read_text())
    assert public["kid"] == expected == jwk_thumbprint(public)
    assert "d" not in public


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "something").write_text("keep me")
    with pytest.raises(UserError, match="refusing to overwrite"):
        create_authority(tmp_path / "ca", url=URL)
    assert [p.name for p in (tmp_path / "ca").iterdir()] == ["something"]
    assert [p.name for p in tmp_path.iterdir()] == ["ca"]


def test_team_names_of_any_script_fit_in_the_certificates(tmp_path: Path) -> None:
    create_authority(tmp_path / "ca", url=URL, team_name="🦊 Füchse " * 8)
    root = load_pem_chain(AuthorityFiles(tmp_path / "ca").root_certificate.read_bytes())[0]
    common_name = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name.startswith("🦊 Füchse") and len(common_name.encode()) <= 64


def test_init_accepts_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir(mode=0o755)
    create_authority(tmp_path / "ca", url=URL)
    assert (tmp_path / "ca").stat().st_mode & 0o777 == 0o700


def test_default_address_is_the_first_up_non_loopback_ipv4(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Addr:
        def __init__(self, family: int, address: str) -> None:
            self.family, self.address = family, address

    class Stat:
        def __init__(self, isup: bool) -> None:
            self.isup = isup

    monkeypatch.setattr(bootstrap.psutil, "net_if_addrs", lambda: {
        "lo": [Addr(socket.AF_INET, "127.0.0.1")],
        "down0": [Addr(socket.AF_INET, "10.9.9.9")],
        "eth0": [Addr(socket.AF_INET6, "fe80::1"), Addr(socket.AF_INET, "169.254.3.3"),
                 Addr(socket.AF_INET, "192.168.7.20")],
    })
    monkeypatch.setattr(bootstrap.psutil, "net_if_stats", lambda: {
        "lo": Stat(True), "down0": Stat(False), "eth0": Stat(True)})
    assert default_lan_address() == "192.168.7.20"
    assert bootstrap.default_url() == "https://192.168.7.20:8443"
    monkeypatch.setattr(bootstrap.psutil, "net_if_stats", lambda: {"lo": Stat(True)})
    with pytest.raises(UserError, match="--url"):
        bootstrap.default_url()


# --- invites -----------------------------------------------------------------------------------

def test_invite_carries_url_root_fingerprint_and_id(authority: Authority) -> None:
    invite = parse_invite(authority.create_invite(42, "Alice", timedelta(hours=72)))
    assert invite.url == URL
    assert invite.root_fingerprint == fingerprint_sha256(authority.root)
    assert (invite.user_id, invite.name) == (42, "Alice")


def test_only_a_digest_of_the_invite_secret_is_stored(ca_dir: Path,
                                                      authority: Authority) -> None:
    secret = parse_invite(authority.create_invite(42, "Alice", timedelta(hours=1))).secret
    with sqlite3.connect(AuthorityFiles(ca_dir).state) as conn:
        dump = "\n".join(conn.iterdump())
    assert secret not in dump
    assert secret_digest(secret) in dump


def test_redeemed_invite_gives_a_token_as_step_ca_expects(authority: Authority,
                                                          clock: Clock) -> None:
    token = token_for(authority, 42)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == authority.settings.provisioner_kid
    public = load_private_key(authority.files.provisioner_key).public_key()
    claims = jwt.decode(token, public, algorithms=["ES256"], audience=f"{URL}/1.0/sign")
    assert claims["iss"] == "chimera"
    assert claims["sub"] == "42" and claims["sans"] == ["42"]
    now = int(clock.now.timestamp())
    assert claims["nbf"] == claims["iat"] == now and claims["exp"] == now + 300
    assert claims["sha"] == authority.root_fingerprint
    assert len(claims["jti"]) >= 32


def test_an_invite_works_once(authority: Authority) -> None:
    secret = parse_invite(authority.create_invite(42, "", timedelta(hours=1))).secret
    authority.redeem_invite(secret, 42)
    with pytest.raises(ApiError) as raised:
        authority.redeem_invite(secret, 42)
    assert raised.value.status == 403 and "already been used" in raised.value.message


def test_an_expired_invite_is_refused(authority: Authority, clock: Clock) -> None:
    secret = parse_invite(authority.create_invite(42, "", timedelta(hours=1))).secret
    clock.now += timedelta(hours=1, seconds=1)
    with pytest.raises(ApiError) as raised:
        authority.redeem_invite(secret, 42)
    assert raised.value.status == 403 and "expired" in raised.value.message


def test_an_invite_for_another_id_is_refused_and_not_spent(authority: Authority) -> None:
    secret = parse_invite(authority.create_invite(42, "", timedelta(hours=1))).secret
    with pytest.raises(ApiError) as raised:
        authority.redeem_invite(secret, 43)
    assert raised.value.status == 403 and "another user id" in raised.value.message
    assert authority.redeem_invite(secret, 42)


@pytest.mark.parametrize("secret", ["", "' OR 1=1 --", "'; rm -rf /", "A" * 43, "é" * 43])
def test_unknown_or_malformed_secrets_are_401(authority: Authority, secret: str) -> None:
    with pytest.raises(ApiError) as raised:
        authority.redeem_invite(secret, 42)
    assert raised.value.status == 401


# --- signing -----------------------------------------------------------------------------------

def test_signed_certificate_is_a_lan_identity_for_the_token_id(authority: Authority,
                                                               clock: Clock) -> None:
    issued = authority.sign(csr_for(42), token_for(authority, 42))
    leaf = issued.leaf
    assert certificate_user_id(leaf) == 42
    assert leaf.subject.rfc4514_string() == "CN=42"
    assert leaf.not_valid_before_utc == clock.now - timedelta(minutes=1)
    assert leaf.not_valid_after_utc == clock.now + timedelta(hours=240)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert issued.intermediate == authority.intermediate
    verify_client_chain(leaf, [issued.intermediate], authority.root, now=clock.now)
    records = [r for r in authority.state.certificates() if r.serial == leaf.serial_number]
    assert len(records) == 1 and records[0].user_id == 42


def test_a_token_signs_once(authority: Authority) -> None:
    token = token_for(authority)
    authority.sign(csr_for(42), token)
    with pytest.raises(ApiError) as raised:
        authority.sign(csr_for(42), token)
    assert raised.value.status == 401 and "already been used" in raised.value.message


def test_a_refused_csr_does_not_spend_the_token(authority: Authority) -> None:
    token = token_for(authority, 42)
    with pytest.raises(ApiError):
        authority.sign(csr_for(43), token)
    assert certificate_user_id(authority.sign(csr_for(42), token).leaf) == 42


@pytest.mark.parametrize(("csr_id", "alt_names", "fragment"), [
    (43, None, "common name"),
    ("42", ["42", "evil.example"], "alternative names"),
    ("42", ["43"], "alternative names"),
    ("42", [], "alternative names"),
])
def test_csr_must_name_exactly_what_the_token_names(
        authority: Authority, csr_id: int | str, alt_names: list[str] | None,
        fragment: str) -> None:
    with pytest.raises(ApiError) as raised:
        authority.sign(csr_for(csr_id, alt_names), token_for(authority, 42))
    assert raised.value.status == 403 and fragment in raised.value.message


def test_expired_token_is_401(authority: Authority, clock: Clock) -> None:
    token = token_for(authority)
    clock.now += timedelta(minutes=6, seconds=1)  # 5 min lifetime + 1 min clock skew
    with pytest.raises(ApiError) as raised:
        authority.sign(csr_for(42), token)
    assert raised.value.status == 401 and "expired" in raised.value.message


def forged_token(authority: Authority, *, key: ec.EllipticCurvePrivateKey | None = None,
                 **changes: str) -> str:
    values = {"kid": authority.settings.provisioner_kid, "issuer": "chimera",
              "audience": f"{URL}/1.0/sign"}
    values.update(changes)
    return issue_token(key or load_private_key(authority.files.provisioner_key),
                       subject="42", sans=["42"], root_fingerprint="00" * 32,
                       now=datetime.now(UTC), **values)


@pytest.mark.parametrize("token_kind", ["other key", "other kid", "other issuer",
                                        "other audience", "garbage", "alg none"])
def test_tokens_not_made_by_this_provisioner_are_401(authority: Authority,
                                                     token_kind: str) -> None:
    token = {
        "other key": lambda: forged_token(authority, key=generate_private_key()),
        "other kid": lambda: forged_token(authority, kid="someone-else"),
        "other issuer": lambda: forged_token(authority, issuer="admin"),
        "other audience": lambda: forged_token(authority, audience="https://x:1/1.0/sign"),
        "garbage": lambda: "' OR 1=1 --",
        "alg none": lambda: jwt.encode({"sub": "42"}, None, algorithm="none",
                                       headers={"kid": authority.settings.provisioner_kid}),
    }[token_kind]()
    with pytest.raises(ApiError) as raised:
        authority.sign(csr_for(42), token)
    assert raised.value.status == 401


def test_a_csr_with_a_broken_signature_is_400(authority: Authority) -> None:
    pem = csr_for(42)
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ApiError) as raised:
        authority.sign(tampered.decode(), token_for(authority))
    assert raised.value.status == 400 and "signature" in raised.value.message


def test_weak_keys_are_400(authority: Authority) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ApiError) as raised:
        authority.sign(csr_for("42", ["42"], key=weak), token_for(authority))
    assert raised.value.status == 400


@pytest.mark.parametrize(("not_after", "lifetime"), [
    ("5m", timedelta(minutes=5)),
    ("1h30m", timedelta(minutes=90)),
    ("264h", timedelta(hours=264)),
    ("", timedelta(hours=240)),
])
def test_requested_lifetime_within_bounds_is_granted(authority: Authority, clock: Clock,
                                                     not_after: str, lifetime: timedelta) -> None:
    leaf = authority.sign(csr_for(42), token_for(authority), not_after).leaf
    assert leaf.not_valid_after_utc == clock.now + lifetime


def test_requested_end_time_in_rfc3339_is_granted(authority: Authority, clock: Clock) -> None:
    end = clock.now + timedelta(hours=24)
    leaf = authority.sign(csr_for(42), token_for(authority), end.isoformat()).leaf
    assert leaf.not_valid_after_utc == end


@pytest.mark.parametrize("not_after", ["4m", "265h", "10000000h", "soon", "2026-01-01T00:00:00",
                                       "-5h", "1e3h"])
def test_lifetimes_out_of_bounds_or_unreadable_are_400(authority: Authority,
                                                       not_after: str) -> None:
    with pytest.raises(ApiError) as raised:
        authority.sign(csr_for(42), token_for(authority), not_after)
    assert raised.value.status == 400


def test_state_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    AuthorityState(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(UserError, match="newer"):
        AuthorityState(path)
