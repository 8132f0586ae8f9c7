"""Chimera's CA client against a real step-ca (smallstep/certificates 0.19.0, Debian 12 sources).

The step-ca comes from tests/step_ca_harness.py (built by ``scripts/build-step-ca``, cached under
build/step-ca/; a failed build fails these tests, never skips them). It is configured from a
Chimera CA folder the way an admin hands signing to step-ca (``chimera-identity step-ca``), and
tokens are minted by the identity provider's own :meth:`Authority.enrollment_token`.
The same client behaviours against both CAs are in tests/test_client_suite_both_cas.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.x509.oid import NameOID

from chimera_tk.config import Config, TeamSettings
from chimera_tk.errors import UserError
from chimera_tk.identity.authority import ApiError, Authority
from chimera_tk.identity.layout import AuthorityFiles, load_settings
from chimera_tk.pki.ca_client import RequestRefused
from chimera_tk.pki.certs import fingerprint_sha256, verify_client_chain
from chimera_tk.pki.enroll import write_identity_files
from chimera_tk.pki.identity import Identity, certificate_user_id
from chimera_tk.pki.keys import build_csr, csr_to_pem, generate_private_key, private_key_to_pem
from chimera_tk.pki.lifecycle import renew_certificate, revoke_certificate
from chimera_tk.profiles import ProfilePaths, profile_paths
from tests.step_ca_harness import StepCA, build_step_ca, running_step_ca

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def step_ca_binary() -> Path:
    return build_step_ca()


@pytest.fixture(scope="session")
def step_ca(step_ca_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepCA]:
    with running_step_ca(step_ca_binary, tmp_path_factory.mktemp("step-ca")) as ca:
        yield ca


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


def test_provider_tokens_name_the_step_ca_and_cannot_be_spent_at_the_provider(
        step_ca: StepCA) -> None:
    user_id = next(_next_id)
    token = step_ca.token(user_id)
    assert load_settings(AuthorityFiles(step_ca.directory)).ca_url == step_ca.url
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == f"{step_ca.url}/1.0/sign"
    header = jwt.get_unverified_header(token)
    config = json.loads((step_ca.directory / "step-ca" / "ca.json").read_text())
    assert header["kid"] == config["authority"]["provisioners"][0]["key"]["kid"]
    # The provider's own /1.0/sign takes only tokens for itself: no second certificate.
    authority = Authority.open(step_ca.directory)
    try:
        with pytest.raises(ApiError) as refused:
            authority.sign(csr_to_pem(build_csr(generate_private_key(), user_id)), token)
    finally:
        authority.close()
    assert (refused.value.status, refused.value.message) == (
        401, "the token is meant for another CA address")
    with step_ca.client() as client:  # step-ca itself takes it
        assert certificate_user_id(client.sign(
            csr_to_pem(build_csr(generate_private_key(), user_id)), token).leaf) == user_id
