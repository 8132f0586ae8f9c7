"""Revocation for a team whose CA is a real step-ca 0.19 (which publishes no CRL).

The identity provider (``chimera-identity serve``, a subprocess) revokes at step-ca with a JWK
provisioner token and publishes the team CRL. These tests cover what the shared client suite
(tests/test_client_suite_both_cas.py) cannot with its one long-running step-ca: step-ca being
away when someone revokes, a retry, and an attempt that step-ca finished but the provider did not.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from chimera_tk.config import Config, TeamSettings, save_config
from chimera_tk.identity import issuing
from chimera_tk.identity.authority import ApiError, Authority
from chimera_tk.identity.bootstrap import create_authority
from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.identity.step_ca import use_step_ca
from chimera_tk.net.revocation import CrlWatcher, crl_url
from chimera_tk.pki.ca_client import RequestRefused, SignedCertificate
from chimera_tk.pki.certs import load_pem_chain
from chimera_tk.pki.enroll import write_identity_files
from chimera_tk.pki.identity import Identity
from chimera_tk.pki.keys import generate_private_key, load_private_key, private_key_to_pem
from chimera_tk.pki.team_ca import report_to_provider
from chimera_tk.profiles import ProfilePaths, profile_paths
from tests.step_ca_harness import build_step_ca, serve_step_ca
from tests.test_identity_server import (
    IDENTITY_CLI,
    RunningCA,
    free_port,
    run_chimera,
    serving_ca,
)

pytestmark = pytest.mark.slow

PROFILE = "alice"  # run_chimera's profile


@contextlib.contextmanager
def provider_for_step_ca(base: Path) -> Iterator[RunningCA]:
    """A CA folder handed to a step-ca (on a port nobody serves yet) and its provider, served
    by ``chimera-identity serve`` as an admin runs it."""
    directory, port = base / "ca", free_port()
    url = f"https://127.0.0.1:{port}"
    create_authority(directory, url=url, team_name="Step team")
    use_step_ca(directory, f"https://127.0.0.1:{free_port()}")
    with serving_ca(directory, port, base / "serve.log") as running:
        yield running


def step_ca_url(provider: RunningCA) -> str:
    authority = Authority.open(provider.directory)
    try:
        return authority.settings.ca_url
    finally:
        authority.close()


def certificate_from_the_team_intermediate(provider: RunningCA, tmp_path: Path,
                                           user_id: int) -> tuple[ProfilePaths, Identity]:
    """Profile ``alice`` with a certificate signed by the team intermediate, which is what
    step-ca signs with; the provider never saw it (nobody reported it)."""
    files = AuthorityFiles(provider.directory)
    intermediate = load_pem_chain(files.intermediate_certificate.read_bytes())[0]
    root = load_pem_chain(files.root_certificate.read_bytes())[0]
    key = generate_private_key()
    now = datetime.now(UTC)
    leaf = issuing.issue_user_certificate(key.public_key(), user_id, intermediate,
                                          load_private_key(files.intermediate_key),
                                          not_before=now - timedelta(minutes=1),
                                          not_after=now + timedelta(hours=240))
    paths = profile_paths(PROFILE, tmp_path).ensure()
    identity = write_identity_files(paths, user_id, private_key_to_pem(key),
                                    SignedCertificate(chain=(leaf, intermediate)), root)
    save_config(paths.config_file, Config(team=TeamSettings(ca_url=step_ca_url(provider),
                                                            identity_url=provider.url)))
    return paths, identity


def crl_serials(paths: ProfilePaths, identity: Identity, provider: RunningCA) -> frozenset[int]:
    """What the LAN's CrlWatcher takes from the team CRL."""
    handed: list[frozenset[int]] = []
    url = crl_url(step_ca_url(provider), provider.url)
    assert url == provider.url + "/crl"
    watcher = CrlWatcher(url, paths.ca_bundle, identity.cert_path, 3600.0, handed.append)
    assert watcher.refresh()
    return handed[-1]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_revoking_while_step_ca_is_away_records_nothing_and_a_retry_completes_it(
        tmp_path: Path) -> None:
    binary = build_step_ca()  # fails, never skips, when step-ca cannot be built
    with provider_for_step_ca(tmp_path / "team") as provider:
        step_ca = step_ca_url(provider)
        paths, identity = certificate_from_the_team_intermediate(provider, tmp_path, 8_300_001)
        revoke = ("--revoke", "--reason", "1", "--note", "laptop stolen", "--yes")

        away = run_chimera(tmp_path, *revoke)
        assert away.returncode == 1
        assert one_line(away.stderr) == (
            f"chimera: could not revoke certificate serial {identity.serial:x}: cannot reach "
            f"the team CA at {step_ca}: connection refused; nothing was revoked, try again")
        # Not half done: the serial is on no list, so the retry below starts from scratch.
        assert identity.serial not in crl_serials(paths, identity, provider)

        with serve_step_ca(binary, provider.directory, tmp_path / "team") as running:
            retried = run_chimera(tmp_path, *revoke)
            assert retried.returncode == 0, retried.stderr
            assert f"serial {identity.serial:x} revoked (KeyCompromise)" in retried.stdout
            assert identity.serial in crl_serials(paths, identity, provider)
            with running.client(identity) as client, pytest.raises(RequestRefused) as renewal:
                client.renew()
            assert renewal.value.status == 401
            assert "certificate has been revoked" in running.log()

    authority = Authority.open(provider.directory)
    try:
        revocation = authority.state.revocation(identity.serial)
    finally:
        authority.close()
    # The provider recorded whom it was, from the certificate presented over mutual TLS.
    assert revocation is not None and revocation.user_id == 8_300_001
    assert (revocation.reason_code, revocation.note) == (1, "laptop stolen")


def test_a_serial_step_ca_already_revoked_still_reaches_the_crl(tmp_path: Path) -> None:
    binary = build_step_ca()
    with provider_for_step_ca(tmp_path / "team") as provider, \
            serve_step_ca(binary, provider.directory, tmp_path / "team") as running:
        paths, identity = certificate_from_the_team_intermediate(provider, tmp_path, 8_300_002)
        # A first attempt that reached step-ca only (as an older Chimera revoked: at step-ca,
        # over mutual TLS); the provider's CRL does not have it.
        with running.client(identity) as client:
            client.revoke(identity.serial, 4, "")
        assert identity.serial not in crl_serials(paths, identity, provider)
        again = run_chimera(tmp_path, "--revoke", "--reason", "4", "--yes")
        assert again.returncode == 0, again.stderr
        assert identity.serial in crl_serials(paths, identity, provider)
        # The admin can revoke by serial a certificate nobody reported; its holder is unknown.
        unknown_serial = x509.random_serial_number()
        listed = subprocess.run(
            [*IDENTITY_CLI, "revoke", "--dir", str(provider.directory), "--serial",
             f"{unknown_serial:x}"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert "refuses to renew it" in listed.stdout
        assert unknown_serial in crl_serials(paths, identity, provider)
        shown = subprocess.run([*IDENTITY_CLI, "list", "--dir", str(provider.directory)],
                               capture_output=True, text=True, timeout=60)
        assert "? (never reported)" in shown.stdout


def test_the_admin_revoke_with_step_ca_away_is_one_clear_line(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    create_authority(directory, url=f"https://127.0.0.1:{free_port()}", team_name="Step team")
    dead = f"https://127.0.0.1:{free_port()}"
    use_step_ca(directory, dead)
    authority = Authority.open(directory)
    try:
        with pytest.raises(ApiError) as refused:
            authority.revoke(12345, 0, "", ott=authority.revoke_token(12345))
        assert refused.value.status == 502
        assert authority.state.revocations() == []
        assert list(authority.crl()) == []
    finally:
        authority.close()
    result = subprocess.run([*IDENTITY_CLI, "revoke", "--dir", str(directory), "--serial",
                             "3039"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"chimera-identity: serial 3039: cannot reach the team CA at {dead}: connection "
        "refused; nothing was revoked, try again")


def test_reporting_needs_a_team_certificate_over_mutual_tls(tmp_path: Path) -> None:
    with provider_for_step_ca(tmp_path / "team") as provider:
        anonymous = provider.post("/enroll/report", {})
        assert anonymous.status_code == 401
        paths, identity = certificate_from_the_team_intermediate(provider, tmp_path, 8_300_003)
        assert report_to_provider(provider.url, paths.ca_bundle, identity)
        assert report_to_provider(provider.url, paths.ca_bundle, identity)  # idempotent
        authority = Authority.open(provider.directory)
        try:
            record = authority.state.certificate(identity.serial)
        finally:
            authority.close()
        assert record is not None and record.user_id == 8_300_003
