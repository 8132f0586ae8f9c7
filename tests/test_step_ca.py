"""Chimera's CA client against a real step-ca (smallstep/certificates 0.19.0, Debian 12 sources).

The binary comes from ``scripts/build-step-ca`` (cached under build/step-ca/). If it cannot be
built, these tests fail rather than skip: the step-ca compatibility they check is a promise of
issue 5. The CA is configured without the ``step`` CLI: root, intermediate and the JWK
provisioner key are made here with ``cryptography``, and tokens are minted by the same
:func:`chimera_tk.identity.tokens.issue_token` the identity provider uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chimera_tk.config import Config, TeamSettings
from chimera_tk.errors import UserError
from chimera_tk.identity.tokens import issue_token, public_jwk
from chimera_tk.pki.ca_client import RequestRefused, StepCAClient
from chimera_tk.pki.certs import certificate_pem, fingerprint_sha256, verify_client_chain
from chimera_tk.pki.enroll import write_identity_files
from chimera_tk.pki.identity import Identity, certificate_user_id
from chimera_tk.pki.keys import build_csr, csr_to_pem, generate_private_key, private_key_to_pem
from chimera_tk.pki.lifecycle import renew_certificate, revoke_certificate
from chimera_tk.profiles import ProfilePaths, profile_paths
from tests.test_identity_server import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build-step-ca"
BINARY = REPO / "build" / "step-ca" / "step-ca"
PROVISIONER = "chimera"
PASSWORD = "intermediate-key-password"


@dataclass
class StepCA:
    url: str
    root: x509.Certificate
    root_bundle: Path
    provisioner_key: ec.EllipticCurvePrivateKey
    kid: str
    log_path: Path

    def token(self, user_id: int) -> str:
        """A one-time token for ``user_id``, minted as the identity provider mints it."""
        return issue_token(self.provisioner_key, kid=self.kid, issuer=PROVISIONER,
                           audience=f"{self.url}/1.0/sign", subject=str(user_id),
                           sans=[str(user_id)], root_fingerprint=fingerprint_sha256(self.root),
                           now=datetime.now(UTC))

    def client(self, identity: Identity | None = None) -> StepCAClient:
        mtls = None if identity is None else (identity.cert_path, identity.key_path)
        return StepCAClient(self.url, self.root_bundle, timeout=(5.0, 20.0),
                            client_identity=mtls)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="session")
def step_ca_binary() -> Path:
    started = time.monotonic()
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 or not BINARY.is_file():
        pytest.fail(f"scripts/build-step-ca failed ({built.returncode}):\n"
                    f"{built.stdout[-3000:]}\n{built.stderr[-3000:]}", pytrace=False)
    print(f"step-ca ready in {time.monotonic() - started:.1f} s")
    return BINARY


def _ca_certificate(subject: str, key: ec.EllipticCurvePrivateKey,
                    issuer: x509.Certificate | None, issuer_key: ec.EllipticCurvePrivateKey,
                    path_length: int) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                              critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=True,
                   crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


def _write_config(base: Path, port: int) -> tuple[Path, Path, StepCA]:
    """ca.json and the password file in ``base``; returns them and the CA's description."""
    secrets_dir, certs_dir = base / "secrets", base / "certs"
    secrets_dir.mkdir(mode=0o700)
    certs_dir.mkdir()
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca_certificate("Chimera Test Root", root_key, None, root_key, 1)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca_certificate("Chimera Test Intermediate", inter_key, root, root_key, 0)
    (certs_dir / "root_ca.crt").write_text(certificate_pem(root))
    (certs_dir / "intermediate_ca.crt").write_text(certificate_pem(inter))
    (secrets_dir / "intermediate_ca_key").write_bytes(inter_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode())))
    password_file = secrets_dir / "password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o600)
    provisioner_key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(provisioner_key.public_key())
    config = {
        "root": str(certs_dir / "root_ca.crt"),
        "crt": str(certs_dir / "intermediate_ca.crt"),
        "key": str(secrets_dir / "intermediate_ca_key"),
        "address": f"127.0.0.1:{port}",
        "dnsNames": ["127.0.0.1", "localhost"],
        "logger": {"format": "text"},
        "db": {"type": "bbolt", "dataSource": str(base / "db" / "step.db")},
        "authority": {
            "provisioners": [{"type": "JWK", "name": PROVISIONER, "key": jwk}],
            "claims": {"minTLSCertDuration": "5m", "maxTLSCertDuration": "264h",
                       "defaultTLSCertDuration": "240h"},
        },
        "tls": {"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": False},
    }
    (base / "db").mkdir()
    config_path = base / "config" / "ca.json"
    config_path.parent.mkdir()
    config_path.write_text(json.dumps(config, indent=2))
    ca = StepCA(url=f"https://127.0.0.1:{port}", root=root,
                root_bundle=certs_dir / "root_ca.crt", provisioner_key=provisioner_key,
                kid=jwk["kid"], log_path=base / "step-ca.log")
    return config_path, password_file, ca


@pytest.fixture(scope="session")
def step_ca(step_ca_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepCA]:
    base = tmp_path_factory.mktemp("step-ca")
    config_path, password_file, ca = _write_config(base, free_port())
    env = {**os.environ, "STEPPATH": str(base), "HOME": str(base)}
    with ca.log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(step_ca_binary), "--password-file", str(password_file), str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        _wait_for_health(ca, process)
        yield ca
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_health(ca: StepCA, process: subprocess.Popen[bytes]) -> None:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify= otherwise
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"step-ca exited ({process.returncode}):\n{ca.log()}", pytrace=False)
            try:
                answer = session.get(f"{ca.url}/health", verify=str(ca.root_bundle), timeout=2)
                if answer.status_code == 200 and answer.json().get("status") == "ok":
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
    finally:
        session.close()
    pytest.fail(f"step-ca did not become healthy within 20 s:\n{ca.log()}", pytrace=False)


_next_id = iter(range(7_000_001, 7_001_000))


def enroll(ca: StepCA, tmp_path: Path) -> tuple[ProfilePaths, Config, Identity]:
    """A profile enrolled at the real step-ca with a token for a fresh id."""
    user_id = next(_next_id)
    paths = profile_paths(f"p{user_id}", tmp_path / "data").ensure()
    key = generate_private_key()
    with ca.client() as client:
        signed = client.sign(csr_to_pem(build_csr(key, user_id)), ca.token(user_id))
    identity = write_identity_files(paths, user_id, private_key_to_pem(key), signed, ca.root)
    return paths, Config(team=TeamSettings(ca_url=ca.url, identity_url=ca.url)), identity


def test_health_and_roots(step_ca: StepCA) -> None:
    with step_ca.client() as client:
        assert client.health()
        roots = client.roots()
    assert [fingerprint_sha256(root) for root in roots] == [fingerprint_sha256(step_ca.root)]


def test_sign_issues_certificate_for_the_token_id(step_ca: StepCA) -> None:
    user_id = next(_next_id)
    key = generate_private_key()
    with step_ca.client() as client:
        signed = client.sign(csr_to_pem(build_csr(key, user_id)), step_ca.token(user_id))
    leaf = signed.leaf
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == str(user_id)
    assert certificate_user_id(leaf) == user_id
    verify_client_chain(leaf, [c for c in signed.chain[1:] if c != step_ca.root], step_ca.root)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(hours=240) <= lifetime <= timedelta(hours=240, minutes=2)


def test_token_replay_is_refused(step_ca: StepCA) -> None:
    user_id = next(_next_id)
    token = step_ca.token(user_id)
    with step_ca.client() as client:
        client.sign(csr_to_pem(build_csr(generate_private_key(), user_id)), token)
        with pytest.raises(RequestRefused) as refused:
            client.sign(csr_to_pem(build_csr(generate_private_key(), user_id)), token)
    assert refused.value.status == 401


def test_token_for_another_id_is_refused(step_ca: StepCA) -> None:
    user_id = next(_next_id)
    with step_ca.client() as client, pytest.raises(RequestRefused) as refused:
        client.sign(csr_to_pem(build_csr(generate_private_key(), user_id + 1)),
                    step_ca.token(user_id))
    assert refused.value.status in (400, 401, 403)


def test_renew_revoke_then_renew_refused(step_ca: StepCA, tmp_path: Path) -> None:
    paths, config, identity = enroll(step_ca, tmp_path)

    renewed = renew_certificate(paths, config)  # mutual TLS, our lifecycle code
    assert renewed.user_id == identity.user_id
    assert renewed.serial != identity.serial

    revoked = revoke_certificate(paths, config, 1, "laptop lost")  # mutual TLS, no token
    assert revoked.serial == renewed.serial

    with pytest.raises(UserError, match="refused to renew"):
        renew_certificate(paths, config)
    with step_ca.client(renewed) as client, pytest.raises(RequestRefused) as twice:
        client.revoke(renewed.serial, 1, "again")
    assert twice.value.status in (400, 401)
