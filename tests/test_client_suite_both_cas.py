"""The same client suite against Chimera's built-in CA and against a real step-ca.

Each run of the ``any_ca`` fixture stands up a team the way an admin would: ``init`` makes a CA
folder, and the identity provider (the shipped routes, Authority and TelegramCodes, served over
TLS on a thread so that the in-process Telegram emulator can deliver its codes) enrolls people by
invite or by a code sent on Telegram. For "builtin" that provider is also the CA; for "step-ca"
the folder was handed to a real step-ca (``chimera-identity step-ca``, see
tests/step_ca_harness.py), the provider's tokens name step-ca's JWK provisioner, and signing
and renewal happen at step-ca; revocation goes to the provider, which revokes at step-ca with a
provisioner token and publishes the team CRL that step-ca 0.19 lacks. Everything a user does
goes through the app's own code: ``chimera --new/--renew/--revoke`` as subprocesses,
:mod:`chimera_tk.pki.lifecycle`, :class:`RenewalWorker` and the LAN's :class:`CrlWatcher`.

Where the two CAs behave differently, each test asserts each CA's behaviour and says why.
A few tests at the end need no CA (a certificate from tests/pki_factory.py does): what the app
shows when a certificate has expired or its renewal keeps failing, and that Telegram still works.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from telethon import TelegramClient

from chimera_tk.app import App, build_app
from chimera_tk.config import (
    Config,
    LanSettings,
    TeamSettings,
    TelegramSettings,
    load_config,
    save_config,
)
from chimera_tk.errors import UserError
from chimera_tk.events import MessageChanged, StatusChanged
from chimera_tk.identity.authority import Authority
from chimera_tk.identity.bootstrap import create_authority
from chimera_tk.identity.cli import main as identity_cli
from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.net.lan import EXPIRED_LAN_STATUS
from chimera_tk.net.peer.tls import (
    TlsFiles,
    client_context,
    peer_user_id,
    require_identity,
    server_context,
)
from chimera_tk.net.renewal import RenewalWorker
from chimera_tk.net.revocation import CrlWatcher, crl_url
from chimera_tk.pki.ca_client import (
    IdentityProviderClient,
    RequestRefused,
    SignedCertificate,
    StepCAClient,
)
from chimera_tk.pki.certs import load_pem_chain, verify_client_chain
from chimera_tk.pki.enroll import write_identity_files
from chimera_tk.pki.identity import Identity, certificate_user_id, load_identity
from chimera_tk.pki.invite import parse_invite
from chimera_tk.pki.keys import build_csr, csr_to_pem, generate_private_key, private_key_to_pem
from chimera_tk.pki.lifecycle import renew_certificate, renew_if_due, revoke_certificate
from chimera_tk.profiles import ProfilePaths, profile_paths
from chimera_tk.setup_flows import Prompter, install
from chimera_tk.views.status_bar import LEVEL_COLOURS
from tests.conftest import pump_until
from tests.pki_factory import TeamCA
from tests.step_ca_harness import StepCA, build_step_ca, running_step_ca
from tests.telegram_emulator import TEST_API_HASH, TEST_API_ID, TelegramServer
from tests.telegram_emulator import install as install_emulator
from tests.test_identity_server import free_port, run_chimera
from tests.test_identity_telegram import Provider, member, received_code

pytestmark = pytest.mark.slow

PROFILE = "alice"  # run_chimera's profile
NEAR_EXPIRY_LIFETIME = timedelta(minutes=10)
NEAR_EXPIRY_LEFT = timedelta(minutes=2)  # less than a third of 10 minutes: renewal is due


@dataclass
class SuiteCA:
    """What every test needs from a team, whichever CA signs for it."""

    kind: str  # "builtin" or "step-ca"
    provider: Provider
    ca_url: str  # where clients sign, renew and revoke
    directory: Path  # the provider's CA folder
    step_ca: StepCA | None

    @property
    def root_bundle(self) -> Path:
        return AuthorityFiles(self.directory).root_certificate

    @property
    def intermediate(self) -> x509.Certificate:
        return load_pem_chain(AuthorityFiles(self.directory).intermediate_certificate
                              .read_bytes())[0]

    def invite(self, user_id: int) -> str:
        authority = Authority.open(self.directory)
        try:
            return authority.create_invite(user_id, "", timedelta(hours=1))
        finally:
            authority.close()

    def token(self, user_id: int) -> str:
        """An enrollment token from OUR provider over HTTPS: an invite redeemed by the client."""
        with IdentityProviderClient(self.provider.url, self.root_bundle) as provider:
            return provider.redeem_invite(parse_invite(self.invite(user_id)).secret, user_id)

    def ca_client(self, identity: Identity | None = None) -> StepCAClient:
        mtls = None if identity is None else (identity.cert_path, identity.key_path)
        return StepCAClient(self.ca_url, self.root_bundle, client_identity=mtls)

    def config(self) -> Config:
        return Config(team=TeamSettings(ca_url=self.ca_url, identity_url=self.provider.url))

    def sign_near_expiry(self, user_id: int, csr_pem: str) -> SignedCertificate:
        """A 10-minute certificate with 2 minutes left, issued by this CA for real."""
        now = datetime.now(UTC)
        if self.step_ca is None:
            # The built-in CA takes no notBefore: it signs in-process, on the served state file,
            # with its clock moved back (the certificate is recorded like any other).
            past = now - (NEAR_EXPIRY_LIFETIME - NEAR_EXPIRY_LEFT)
            authority = Authority.open(self.directory, clock=lambda: past)
            try:
                token = authority.enrollment_token(user_id)
                issued = authority.sign(csr_pem, token, "10m")
            finally:
                authority.close()
            return SignedCertificate(chain=(issued.leaf, issued.intermediate))
        # step-ca's clock cannot be moved, but it accepts a notBefore in the past (RFC 3339),
        # which Chimera's client never sends: so this one request is made by hand.
        session = requests.Session()
        session.trust_env = False
        try:
            answer = session.post(f"{self.ca_url}/1.0/sign", verify=str(self.root_bundle),
                                  timeout=20, json={
                                      "csr": csr_pem, "ott": self.token(user_id),
                                      "notBefore": _rfc3339(now - NEAR_EXPIRY_LIFETIME
                                                            + NEAR_EXPIRY_LEFT),
                                      "notAfter": _rfc3339(now + NEAR_EXPIRY_LEFT)})
        finally:
            session.close()
        assert answer.status_code == 201, answer.text
        return SignedCertificate(chain=tuple(x509.load_pem_x509_certificate(pem.encode())
                                             for pem in answer.json()["certChain"]))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def telegram() -> TelegramServer:
    return TelegramServer()


_provider_phones = iter(range(15557000, 15557100))


@contextlib.contextmanager
def _provider(directory: Path, url: str, telegram: TelegramServer) -> Iterator[Provider]:
    account = telegram.add_user("Team", "Provider", phone=f"+{next(_provider_phones)}")
    running = Provider(directory, telegram, account)
    running.url = url
    running.port = int(url.rsplit(":", 1)[1])
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module", params=["builtin", "step-ca"])
def any_ca(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           telegram: TelegramServer) -> Iterator[SuiteCA]:
    base = tmp_path_factory.mktemp(request.param)
    provider_url = f"https://127.0.0.1:{free_port()}"
    if request.param == "builtin":
        directory = base / "ca"
        create_authority(directory, url=provider_url, team_name="Builtin team")
        with _provider(directory, provider_url, telegram) as provider:
            yield SuiteCA("builtin", provider, provider_url, directory, None)
        return
    binary = build_step_ca()  # fails, never skips, when step-ca cannot be built
    with running_step_ca(binary, base, provider_url=provider_url) as step_ca, \
            _provider(step_ca.directory, provider_url, telegram) as provider:
        yield SuiteCA("step-ca", provider, step_ca.url, step_ca.directory, step_ca)


_next_id = iter(range(8_100_001, 8_200_000))


def enrolled(ca: SuiteCA, tmp_path: Path, *, near_expiry: bool = False,
             ) -> tuple[ProfilePaths, Config, Identity]:
    """Profile ``alice`` in ``tmp_path`` with a certificate from ``ca`` and its config saved.

    Fresh (240 h, signed through the client's StepCAClient), or 10 minutes long with 2 left.
    """
    user_id = next(_next_id)
    paths = profile_paths(PROFILE, tmp_path).ensure()
    key = generate_private_key()
    csr_pem = csr_to_pem(build_csr(key, user_id))
    if near_expiry:
        signed = ca.sign_near_expiry(user_id, csr_pem)
    else:
        with ca.ca_client() as client:
            signed = client.sign(csr_pem, ca.token(user_id))
    root = load_pem_chain(ca.root_bundle.read_bytes())[0]
    identity = write_identity_files(paths, user_id, private_key_to_pem(key), signed, root)
    config = ca.config()
    save_config(paths.config_file, config)
    return paths, config, identity


def telegram_client_factory(telegram: TelegramServer):  # -> (session, id, hash) -> client
    """Telethon's real client, connected to the in-process emulator instead of Telegram."""
    def make(session: str, api_id: int, api_hash: str) -> TelegramClient:
        client = TelegramClient(session, api_id, api_hash, flood_sleep_threshold=2,
                                retry_delay=0)
        install_emulator(client, telegram)
        return client

    return make


def pump_events(app: App, kind: type, *, where, timeout: float = 20.0) -> object:
    """Dispatch the headless app's events on this thread until one of ``kind`` matches."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = app.events.get(timeout=0.05)
        if event is None:
            continue
        app.dispatcher.dispatch(event)
        if isinstance(event, kind) and where(event):
            return event
    raise AssertionError(f"no matching {kind.__name__} within {timeout:g} s")


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def lifetime(identity: Identity) -> timedelta:
    return identity.not_after - identity.not_before


# --- enrollment --------------------------------------------------------------------------------

def test_chimera_new_with_an_invite_enrolls_at_the_teams_ca(any_ca: SuiteCA,
                                                           tmp_path: Path) -> None:
    user_id = next(_next_id)
    result = run_chimera(tmp_path, "--new", "--invite", any_ca.invite(user_id))
    assert result.returncode == 0, result.stderr
    paths = profile_paths(PROFILE, tmp_path)
    identity = load_identity(paths)
    assert identity is not None and identity.user_id == user_id
    # The provider's token named the CA, so the client signed there and remembers both.
    team = load_config(paths.config_file).team
    assert (team.ca_url, team.identity_url) == (any_ca.ca_url, any_ca.provider.url)
    leaf = load_pem_chain(identity.cert_path.read_bytes())[0]
    assert leaf.issuer == any_ca.intermediate.subject
    verify_client_chain(leaf, [any_ca.intermediate],
                        load_pem_chain(any_ca.root_bundle.read_bytes())[0])
    # Both CAs default to the design's 240 h and backdate by one minute.
    assert timedelta(hours=240) <= lifetime(identity) <= timedelta(hours=240, minutes=2)


def test_chimera_new_by_telegram_code_enrolls_at_the_teams_ca(any_ca: SuiteCA,
                                                              tmp_path: Path) -> None:
    provider = any_ca.provider
    provider.advance(minutes=11)  # fresh rate-limit windows for this test
    user = member(provider, "Carol")
    flags = ["--new", "--telegram-id", str(user.id), "--identity-url", provider.url,
             "--fingerprint", provider.fingerprint]
    asked = run_chimera(tmp_path, *flags)
    assert asked.returncode == 1 and "--code CODE" in one_line(asked.stderr)
    done = run_chimera(tmp_path, *flags, "--code", received_code(provider, user))
    assert done.returncode == 0, done.stderr
    paths = profile_paths(PROFILE, tmp_path)
    identity = load_identity(paths)
    assert identity is not None and identity.user_id == user.id
    assert load_config(paths.config_file).team.ca_url == any_ca.ca_url


def test_a_replayed_token_is_refused(any_ca: SuiteCA) -> None:
    user_id = next(_next_id)
    token = any_ca.token(user_id)
    with any_ca.ca_client() as client:
        client.sign(csr_to_pem(build_csr(generate_private_key(), user_id)), token)
        with pytest.raises(RequestRefused) as replayed:
            client.sign(csr_to_pem(build_csr(generate_private_key(), user_id)), token)
    assert replayed.value.status == 401


def test_a_token_for_one_id_does_not_sign_a_csr_for_another(any_ca: SuiteCA) -> None:
    user_id = next(_next_id)
    token = any_ca.token(user_id)
    with any_ca.ca_client() as client:
        with pytest.raises(RequestRefused) as refused:
            client.sign(csr_to_pem(build_csr(generate_private_key(), user_id + 1)), token)
        assert refused.value.status == 403  # both: the CSR does not match the token
        right_csr = csr_to_pem(build_csr(generate_private_key(), user_id))
        if any_ca.kind == "builtin":
            # The built-in CA records the token only with a certificate it issues, so the
            # holder can still use it with the right CSR.
            assert certificate_user_id(client.sign(right_csr, token).leaf) == user_id
        else:
            # step-ca marks the token used when it authorizes it, before it looks at the CSR:
            # the refused request burnt it.
            with pytest.raises(RequestRefused) as burnt:
                client.sign(right_csr, token)
            assert burnt.value.status == 401


# --- renewal -----------------------------------------------------------------------------------

def test_renew_near_expiry_keeps_id_and_key_and_extends_validity(any_ca: SuiteCA,
                                                                 tmp_path: Path) -> None:
    fresh_paths, fresh_config, fresh = enrolled(any_ca, tmp_path / "fresh")
    assert not renew_if_due(fresh_paths, fresh_config)  # 240 h left: not due
    assert load_identity(fresh_paths).serial == fresh.serial

    paths, config, old = enrolled(any_ca, tmp_path / "old", near_expiry=True)
    key_before = old.key_path.read_bytes()
    assert old.renewal_due()
    assert renew_if_due(paths, config)
    new = load_identity(paths)
    assert new is not None
    assert new.user_id == old.user_id and new.serial != old.serial
    assert new.not_after > old.not_after + timedelta(minutes=5)
    # Both renew for the old certificate's length (step-ca: the same duration, backdated).
    assert abs(lifetime(new) - lifetime(old)) <= timedelta(seconds=2)
    assert new.key_path.read_bytes() == key_before
    assert new.cert_path.stat().st_mode & 0o777 == 0o600
    assert not new.renewal_due()


def test_chimera_renew_as_a_command(any_ca: SuiteCA, tmp_path: Path) -> None:
    paths, _, old = enrolled(any_ca, tmp_path)
    result = run_chimera(tmp_path, "--renew")
    assert result.returncode == 0, result.stderr
    new = load_identity(paths)
    assert new is not None and new.user_id == old.user_id
    assert f"serial {old.serial:x} replaced by {new.serial:x}" in result.stdout
    assert load_pem_chain(new.cert_path.read_bytes())[0].issuer == any_ca.intermediate.subject


def test_the_renewal_worker_renews_a_due_certificate(any_ca: SuiteCA, tmp_path: Path) -> None:
    paths, config, old = enrolled(any_ca, tmp_path, near_expiry=True)
    events: list[object] = []
    renewed: list[Identity] = []
    worker = RenewalWorker(paths, config, events.append, renewed.append)
    wait_s = worker.check_once()
    assert worker.failures == 0
    assert [identity.user_id for identity in renewed] == [old.user_id]
    assert renewed[0].serial != old.serial and renewed[0].not_after > old.not_after
    statuses = [e for e in events if isinstance(e, StatusChanged)]
    assert [(s.component, s.level) for s in statuses] == [("certificate", "info")]
    assert "expired" not in statuses[0].text and str(old.user_id) in statuses[0].text
    # The next check is scheduled for when the new certificate becomes due, not sooner.
    assert wait_s > 60
    assert worker.check_once() == pytest.approx(wait_s, abs=30)
    assert len(renewed) == 1  # nothing more to do


# --- revocation --------------------------------------------------------------------------------

def test_chimera_revoke_then_renewal_is_refused(any_ca: SuiteCA, tmp_path: Path) -> None:
    paths, _, identity = enrolled(any_ca, tmp_path)
    revoked = run_chimera(tmp_path, "--revoke", "--reason", "1", "--note", "laptop stolen",
                          "--yes")
    assert revoked.returncode == 0, revoked.stderr
    assert f"serial {identity.serial:x} revoked (KeyCompromise)" in revoked.stdout
    again = run_chimera(tmp_path, "--renew")
    assert again.returncode == 1
    line = one_line(again.stderr)
    assert line.startswith(f"chimera: the team CA refused to renew certificate serial "
                           f"{identity.serial:x}: ")
    if any_ca.kind == "builtin":
        assert line.endswith("this certificate has been revoked; get a new one with an invite")
    else:
        # step-ca's error bodies are generic; the reason ("certificate has been revoked") is only
        # in its log, so that is where this test looks for it.
        assert "certificate has been revoked" in any_ca.step_ca.log()
    assert load_identity(paths).serial == identity.serial  # the files were left alone
    # The LAN learns it from the team CRL (for step-ca: the provider's, see below).
    handed, watcher = lan_crl(paths, load_config(paths.config_file), identity)
    assert watcher.refresh() and identity.serial in handed[-1]
    twice = run_chimera(tmp_path, "--revoke", "--reason", "1", "--yes")
    assert twice.returncode == 1
    one_line(twice.stderr)


def test_revoking_someone_elses_certificate_is_refused(any_ca: SuiteCA, tmp_path: Path) -> None:
    _, _, alice = enrolled(any_ca, tmp_path / "alice")
    bob_paths, bob_config, bob = enrolled(any_ca, tmp_path / "bob")
    with any_ca.ca_client(alice) as client, pytest.raises(RequestRefused) as refused:
        client.revoke(bob.serial, 1, "mine now")
    # The built-in CA says 403 (authenticated, not allowed); step-ca 0.19 answers 400 "serial
    # number in client certificate different than body" (api/revoke.go). Refused either way.
    assert refused.value.status == (403 if any_ca.kind == "builtin" else 400)
    renewed = renew_certificate(bob_paths, bob_config)  # bob's certificate is still good
    assert renewed.user_id == bob.user_id


def test_the_revoked_serial_reaches_the_lans_crl(any_ca: SuiteCA, tmp_path: Path) -> None:
    paths, config, identity = enrolled(any_ca, tmp_path)
    revoke_certificate(paths, config, 9, "left the team")
    url = crl_url(config.team.ca_url, config.team.identity_url)
    # The identity provider publishes the team CRL for both: the built-in CA is its own
    # provider (one address); step-ca 0.19.0 has no CRL ("TODO: Add CRL and OCSP support",
    # api/revoke.go), so the provider, which holds the same intermediate, signs it for step-ca's
    # certificates too.
    assert url == f"{any_ca.provider.url}/crl"
    handed, watcher = lan_crl(paths, config, identity)
    assert watcher.refresh() and identity.serial in handed[-1]
    entry = watcher.current.get_revoked_certificate_by_serial_number(identity.serial)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason \
        is x509.ReasonFlags.privilege_withdrawn
    # ...and the CA that renews refuses it (step-ca was told by the provider, with a token).
    with any_ca.ca_client(identity) as client, pytest.raises(RequestRefused) as renewal:
        client.renew()
    assert renewal.value.status == 401


def test_admin_revoke_by_id_reaches_the_ca_and_the_crl(any_ca: SuiteCA, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    user_id = next(_next_id)
    joined = run_chimera(tmp_path, "--new", "--invite", any_ca.invite(user_id))
    assert joined.returncode == 0, joined.stderr
    paths = profile_paths(PROFILE, tmp_path)
    config, identity = load_config(paths.config_file), load_identity(paths)
    # The provider knows the certificate: it signed it, or the client reported what step-ca
    # signed (step-ca 0.19 has no API to list what it issued).
    assert identity_cli(["list", "--dir", str(any_ca.directory)]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if str(user_id) in line]
    assert len(listed) == 1 and f"serial {identity.serial:x}" in listed[0] \
        and listed[0].endswith("valid"), listed
    assert identity_cli(["revoke", "--dir", str(any_ca.directory), "--id", str(user_id),
                         "--reason", "3", "--note", "moved on"]) == 0
    out = capsys.readouterr().out
    assert f"Revoked serial {identity.serial:x} (AffiliationChanged)." in out
    assert ("refuses to renew it" in out) == (any_ca.kind == "step-ca")
    handed, watcher = lan_crl(paths, config, identity)
    assert watcher.refresh() and identity.serial in handed[-1]
    with pytest.raises(UserError, match="refused to renew certificate serial"):
        renew_certificate(paths, config)
    assert identity_cli(["list", "--dir", str(any_ca.directory)]) == 0
    assert "AffiliationChanged: moved on" in capsys.readouterr().out
    assert identity_cli(["revoke", "--dir", str(any_ca.directory), "--id", str(user_id)]) == 1
    assert f"id {user_id} has no valid certificate to revoke" in capsys.readouterr().err


def test_a_renewed_certificate_is_known_to_the_provider(any_ca: SuiteCA, tmp_path: Path) -> None:
    paths, config, old = enrolled(any_ca, tmp_path)
    new = renew_certificate(paths, config)
    authority = Authority.open(any_ca.directory)
    try:
        record = authority.state.certificate(new.serial)
    finally:
        authority.close()
    # The built-in CA recorded it when it signed; step-ca's was reported by the client.
    assert record is not None and record.user_id == old.user_id
    assert record.not_after == new.not_after.replace(microsecond=0)


def lan_crl(paths: ProfilePaths, config: Config, identity: Identity,
            ) -> tuple[list[frozenset[int]], CrlWatcher]:
    """The LAN's CrlWatcher for this profile, as the app builds it, and what it hands over."""
    handed: list[frozenset[int]] = []
    watcher = CrlWatcher(crl_url(config.team.ca_url, config.team.identity_url), paths.ca_bundle,
                         identity.cert_path, 3600.0, handed.append)
    return handed, watcher


# --- an unreachable CA -------------------------------------------------------------------------

def test_an_unreachable_ca_is_one_clear_line(any_ca: SuiteCA, tmp_path: Path) -> None:
    paths, _, identity = enrolled(any_ca, tmp_path, near_expiry=True)
    dead = f"https://127.0.0.1:{free_port()}"
    save_config(paths.config_file, Config(team=TeamSettings(ca_url=dead,
                                                           identity_url=dead)))
    result = run_chimera(tmp_path, "--renew")
    assert result.returncode == 1
    assert one_line(result.stderr) == f"chimera: cannot reach the team CA at {dead}: " \
                                      "connection refused"
    with pytest.raises(UserError, match=r"^cannot reach the team CA"):
        renew_certificate(paths, Config(team=TeamSettings(ca_url=dead)))
    # The worker keeps trying; the second failure in a row shows a warning in the status bar.
    events: list[object] = []
    worker = RenewalWorker(paths, Config(team=TeamSettings(ca_url=dead)), events.append,
                           lambda _: None, retry_s=300.0)
    assert worker.check_once() == 300.0 and events == []
    assert worker.check_once() == 300.0
    assert len(events) == 1 and isinstance(events[0], StatusChanged)
    assert (events[0].component, events[0].level) == ("certificate", "warning")
    assert events[0].text.startswith("Certificate: renewal failing — expires ")
    assert load_identity(paths).serial == identity.serial


def test_a_certificate_that_expired_while_running_is_shown_as_expired(tmp_path: Path) -> None:
    # No CA is involved: the client refuses to renew an expired certificate before asking one
    # (both CAs would refuse it too), so a certificate from the test factory is enough.
    paths = profile_paths(PROFILE, tmp_path).ensure()
    TeamCA.create().write_identity(paths.root, 8_199_999, starts_in_days=-0.01, days=0.005)
    identity = load_identity(paths)
    assert identity is not None and not identity.is_valid_at(datetime.now(UTC))
    events: list[object] = []
    worker = RenewalWorker(paths, Config(team=TeamSettings(ca_url="https://127.0.0.1:9")),
                           events.append, lambda _: None, retry_s=300.0)
    assert worker.check_once() == 300.0
    assert events == [StatusChanged("certificate", "Certificate: 8199999 · expired", "error")]


def test_install_with_an_invite_ends_with_enrollment(any_ca: SuiteCA, tmp_path: Path,
                                                     telegram: TelegramServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's ``--install``: database, Telegram sign-in (emulator), first sync, then the
    certificate from the invite, at whichever CA the team uses."""
    phone = f"+{next(_provider_phones)}"
    user = telegram.add_user("Dora", phone=phone)
    paths = profile_paths(PROFILE, tmp_path).ensure()
    args = argparse.Namespace(api_id=str(TEST_API_ID), api_hash=TEST_API_HASH, identity_url="",
                              ca_url="", broadcast="", phone=phone, code=None,
                              invite=any_ca.invite(user.id))

    class CodeAnswer(io.StringIO):
        def readline(self, *_a: object) -> str:  # the code exists only once it was sent
            return telegram.last_code(phone) + "\n"

    out = io.StringIO()
    assert install(paths, Config(), args, prompter=Prompter(CodeAnswer(), out),
                   client_factory=telegram_client_factory(telegram)) == 0
    assert "First sync done" in out.getvalue()
    assert f"as id {user.id}" in capsys.readouterr().out
    identity = load_identity(paths)
    assert identity is not None and identity.user_id == user.id
    config = load_config(paths.config_file)
    assert config.telegram.api_id == TEST_API_ID
    assert (config.team.ca_url, config.team.identity_url) == (any_ca.ca_url,
                                                              any_ca.provider.url)


def test_with_an_expired_certificate_the_lan_is_off_and_telegram_still_sends(
        tmp_path: Path, telegram: TelegramServer) -> None:
    phone = f"+{next(_provider_phones)}"
    alice = telegram.add_user("Alice", phone=phone)
    bob = telegram.add_user("Bob", phone=f"+{next(_provider_phones)}")
    telegram.send_as(bob, alice, "are you there?")
    paths = profile_paths("expired", tmp_path).ensure()
    TeamCA.create().write_identity(paths.root, alice.id, starts_in_days=-0.01, days=0.005)
    config = Config(telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH),
                    team=TeamSettings(ca_url=f"https://127.0.0.1:{free_port()}"),
                    lan=LanSettings(discovery_port=free_port(), announce_port=free_port(),
                                    peer_port=free_port(), broadcast_addresses=("127.0.0.1",)))
    app = build_app(paths, config, window=False,
                    telegram_client_factory=telegram_client_factory(telegram))
    statuses: list[StatusChanged] = []
    app.dispatcher.subscribe(StatusChanged, statuses.append)
    app.start()
    try:
        assert app.lan is None
        assert not any(isinstance(worker, RenewalWorker) for worker in app.workers)
        app.telegram.request_code(phone).result(10)
        assert app.telegram.submit_code(telegram.last_code(phone)).result(10)
        app.telegram.wait_synced().result(30)
        sent = app.router.send_text(bob.id, "on my way, via Telegram")
        pump_events(app, MessageChanged, where=lambda e: e.message.id == sent.id
                    and e.message.state == "sent")
        assert telegram.messages_of(bob, alice)[-1].text == "on my way, via Telegram"
        assert app.store.messages.get(sent.id).transport == "telegram"
    finally:
        app.shutdown()
    lan = [s for s in statuses if s.component == "lan"]
    assert [(s.text, s.level) for s in lan] == [(EXPIRED_LAN_STATUS, "error")]
    certificate = [s for s in statuses if s.component == "certificate"]
    assert certificate[-1].text == f"Certificate: {alice.id} · expired"


@pytest.mark.gui
def test_a_renewal_that_keeps_failing_shows_an_amber_warning_in_the_status_bar(
        app: App, paths: ProfilePaths) -> None:
    # A certificate with a fifth of its life left and a CA nobody answers at: the real worker,
    # posting to the running window's event queue as it does in the app.
    TeamCA.create().write_identity(paths.root, 8_199_998, starts_in_days=-0.008, days=0.01)
    dead = Config(team=TeamSettings(ca_url=f"https://127.0.0.1:{free_port()}"))
    worker = RenewalWorker(paths, dead, app.events.post, lambda _: None)
    bar = app.window.status_bar
    worker.check_once()  # one failure is only logged (see the unreachable-CA test)
    worker.check_once()
    assert pump_until(app, lambda: "renewal failing" in bar.text("certificate"))
    assert bar.text("certificate").startswith("Certificate: renewal failing — expires ")
    assert str(bar.labels["certificate"].cget("foreground")) == LEVEL_COLOURS["warning"]
    assert str(bar.labels["telegram"].cget("foreground")) == ""  # the others are unchanged


def test_certificates_from_the_ca_pass_the_lans_mutual_tls(any_ca: SuiteCA,
                                                           tmp_path: Path) -> None:
    # The LAN's own contexts: TLS 1.3 only, chain to the team root, OpenSSL's X509_STRICT.
    _, _, alice = enrolled(any_ca, tmp_path / "alice")
    _, _, bob = enrolled(any_ca, tmp_path / "bob")

    def files(identity: Identity) -> TlsFiles:
        return TlsFiles(identity.key_path, identity.cert_path, identity.ca_bundle_path)

    seen_by_bob: list[int] = []
    left, right = socket.socketpair()

    def bob_serves() -> None:
        with server_context(files(bob)).wrap_socket(right, server_side=True) as tls:
            seen_by_bob.append(peer_user_id(tls))

    thread = threading.Thread(target=bob_serves)
    thread.start()
    with client_context(files(alice)).wrap_socket(left) as tls:
        assert require_identity(tls, bob.user_id) == bob.user_id
        assert tls.version() == "TLSv1.3"
    thread.join(timeout=10)
    assert seen_by_bob == [alice.user_id]
