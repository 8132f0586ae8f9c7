"""Enrollment by Telegram code, over real HTTPS on loopback, with the code sent by Telethon's real
client to the in-process Telegram emulator.

The provider runs in-process (its aiohttp app on a thread of its own, served over TLS as
``serve`` does) rather than as a ``serve`` subprocess: the emulator's accounts and messages live
in this process, where the tests read the code with ``messages_of``, and the code's clock can be
moved forward (expiry, rate-limit windows) without a test-only hook in the shipped ``serve``.
Everything else is the shipped code: Authority, routes, TelegramCodes, TelethonCodeSender, and
the ``chimera --new`` client as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from aiohttp import web

from chimera_tk.identity.authority import Authority
from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.identity.server import build_app, server_ssl_context
from chimera_tk.identity.telegram_codes import CodeSender, TelethonCodeSender
from chimera_tk.pki.keys import build_csr, csr_to_pem, generate_private_key
from chimera_tk.profiles import profile_paths
from tests.telegram_emulator import ServerUser, TelegramServer, connect_client
from tests.test_identity_server import (
    HOSTILE_STRINGS,
    IDENTITY_CLI,
    assert_clean_refusal,
    free_port,
    run_chimera,
)


class Provider:
    """The identity provider on a background event loop, its codes' clock movable."""

    def __init__(self, directory: Path, telegram: TelegramServer, account: ServerUser) -> None:
        self.directory = directory
        self.telegram = telegram
        self.account = account
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.offset = timedelta(0)
        self.fingerprint = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def codes_now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(30), "provider did not start"
        if self._error:
            raise self._error

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        # The authority (and its SQLite connection) belongs to this thread.
        authority = Authority.open(self.directory)
        self.fingerprint = authority.root_fingerprint
        authority.ensure_server_certificate()

        @contextlib.asynccontextmanager
        async def emulator_sender() -> AsyncIterator[CodeSender]:
            client = await connect_client(self.telegram, signed_in_as=self.account)
            try:
                yield TelethonCodeSender(client)
            finally:
                await client.disconnect()

        app = build_app(authority, emulator_sender, codes_clock=self.codes_now)
        runner = web.AppRunner(app)
        try:
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self.port,
                               ssl_context=server_ssl_context(authority.files))
            self._loop.run_until_complete(site.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            authority.close()
            self._loop.close()


@pytest.fixture(scope="module")
def telegram() -> TelegramServer:
    return TelegramServer()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory,
             telegram: TelegramServer) -> Iterator[Provider]:
    directory = tmp_path_factory.mktemp("telegram-ca") / "ca"
    port = free_port()
    init = subprocess.run([*IDENTITY_CLI, "init", "--dir", str(directory),
                           "--url", f"https://127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    account = telegram.add_user("Team", "Provider", phone="+15550000")
    running = Provider(directory, telegram, account)
    running.port, running.url = port, f"https://127.0.0.1:{port}"
    running.start()
    yield running
    running.stop()


@pytest.fixture()
def api(provider: Provider) -> Iterator[requests.Session]:
    provider.advance(minutes=11)  # every test starts with fresh rate-limit windows
    session = requests.Session()
    session.trust_env = False
    session.verify = str(AuthorityFiles(provider.directory).root_certificate)
    yield session
    session.close()


_phones = iter(range(15551000, 15559999))


def member(provider: Provider, name: str = "Member") -> ServerUser:
    """A Telegram account the provider's account can write to (one of its contacts)."""
    user = provider.telegram.add_user(name, phone=f"+{next(_phones)}")
    provider.account.contacts[user.id] = (name, "")
    return user


def received_code(provider: Provider, user: ServerUser) -> str:
    messages = provider.telegram.messages_of(user, provider.account)
    assert messages, "no code arrived on Telegram"
    found = re.search(r"\b(\d{8})\b", messages[-1].text)
    assert found, messages[-1].text
    return found.group(1)


def start(api: requests.Session, provider: Provider, body: object) -> requests.Response:
    return api.post(f"{provider.url}/enroll/telegram/start", json=body, timeout=30)


def finish(api: requests.Session, provider: Provider, body: object) -> requests.Response:
    return api.post(f"{provider.url}/enroll/telegram/finish", json=body, timeout=30)


def sign(api: requests.Session, provider: Provider, user_id: int,
         ott: str) -> requests.Response:
    csr = csr_to_pem(build_csr(generate_private_key(), user_id))
    return api.post(f"{provider.url}/1.0/sign", json={"csr": csr, "ott": ott}, timeout=30)


def test_chimera_new_by_telegram_code(provider: Provider, api: requests.Session,
                                      tmp_path: Path) -> None:
    user = member(provider, "Alice")
    flags = ["--new", "--telegram-id", str(user.id), "--identity-url", provider.url,
             "--fingerprint", provider.fingerprint]
    first = run_chimera(tmp_path, *flags)
    assert first.returncode == 1
    assert "a code was sent" in first.stderr and "--code CODE" in first.stderr
    code = received_code(provider, user)
    done = run_chimera(tmp_path, *flags, "--code", code)
    assert done.returncode == 0, done.stderr
    assert f"as id {user.id}" in done.stdout
    paths = profile_paths("alice", tmp_path)
    assert paths.private_key(user.id).is_file() and paths.certificate(user.id).is_file()
    # The same code cannot enroll twice.
    again = run_chimera(tmp_path, *flags, "--code", code)
    assert again.returncode == 1 and "already been used" in again.stderr


def test_enrollment_by_phone_number(provider: Provider, api: requests.Session) -> None:
    user = member(provider, "Bob")
    answer = start(api, provider, {"phone": f"+{user.phone}"})
    assert answer.status_code == 200, answer.text
    assert "id" not in answer.json()  # the phone's id is not disclosed to the asker
    token = finish(api, provider, {"phone": f"+{user.phone}",
                                   "code": received_code(provider, user)})
    assert token.status_code == 200, token.text
    assert sign(api, provider, user.id, token.json()["ott"]).status_code == 201


def test_brute_force_locks_the_code_after_five_attempts(provider: Provider,
                                                        api: requests.Session) -> None:
    user = member(provider)
    assert start(api, provider, {"id": user.id}).status_code == 200
    code = received_code(provider, user)
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    for _ in range(5):
        answer = finish(api, provider, {"id": user.id, "code": wrong})
        assert_clean_refusal(answer, 401)
    locked = finish(api, provider, {"id": user.id, "code": code})
    assert_clean_refusal(locked, 403)
    assert "locked" in locked.json()["message"]


def test_an_expired_code_is_refused(provider: Provider, api: requests.Session) -> None:
    user = member(provider)
    assert start(api, provider, {"id": user.id}).status_code == 200
    code = received_code(provider, user)
    provider.advance(minutes=5, seconds=1)
    answer = finish(api, provider, {"id": user.id, "code": code})
    assert_clean_refusal(answer, 403)
    assert "expired" in answer.json()["message"]


def test_a_code_for_one_id_is_refused_for_another(provider: Provider,
                                                  api: requests.Session) -> None:
    victim, attacker = member(provider), member(provider)
    assert start(api, provider, {"id": attacker.id}).status_code == 200
    code = received_code(provider, attacker)
    assert_clean_refusal(finish(api, provider, {"id": victim.id, "code": code}), 401)
    assert start(api, provider, {"id": victim.id}).status_code == 200
    assert_clean_refusal(finish(api, provider, {"id": victim.id, "code": code}), 401)
    # The token for one id cannot sign a CSR for another either.
    token = finish(api, provider, {"id": attacker.id, "code": code}).json()["ott"]
    assert_clean_refusal(sign(api, provider, victim.id, token), 403)


def test_a_token_is_good_for_one_signature(provider: Provider, api: requests.Session) -> None:
    user = member(provider)
    assert start(api, provider, {"id": user.id}).status_code == 200
    token = finish(api, provider, {"id": user.id, "code": received_code(provider, user)})
    ott = token.json()["ott"]
    assert sign(api, provider, user.id, ott).status_code == 201
    assert_clean_refusal(sign(api, provider, user.id, ott), 401)


def test_an_account_the_provider_cannot_reach_is_a_clean_404(provider: Provider,
                                                             api: requests.Session) -> None:
    stranger = provider.telegram.add_user("Stranger")  # not a contact: no way to write to it
    assert_clean_refusal(start(api, provider, {"id": stranger.id}), 404)
    assert_clean_refusal(start(api, provider, {"phone": "+19999999999"}), 404)


def test_start_is_rate_limited(provider: Provider, api: requests.Session) -> None:
    user = member(provider)
    for _ in range(3):
        assert start(api, provider, {"id": user.id}).status_code == 200
    limited = start(api, provider, {"id": user.id})
    assert_clean_refusal(limited, 429)
    # The address limit holds across ids too.
    assert_clean_refusal(start(api, provider, {"id": member(provider).id}), 429)
    provider.advance(minutes=11)
    assert start(api, provider, {"id": user.id}).status_code == 200


def hostile_bodies() -> list[object]:
    bodies: list[object] = [[], "x", None, {}, {"id": 1, "phone": "+15550100"}]
    for text in HOSTILE_STRINGS:
        bodies += [{"id": text}, {"phone": text}, {"id": 1, "code": text},
                   {"phone": text, "code": "12345678"}, {"id": True, "code": text}]
    bodies += [{"id": int("9" * 30)}, {"id": -1}, {"id": 1.5}, {"id": 1, "code": 12345678}]
    return bodies


@pytest.mark.parametrize("route", ["start", "finish"])
def test_hostile_requests_get_a_clean_4xx(provider: Provider, api: requests.Session,
                                          route: str) -> None:
    for body in hostile_bodies():
        answer = api.post(f"{provider.url}/enroll/telegram/{route}",
                          data=json.dumps(body).encode(), timeout=30)
        assert_clean_refusal(answer)
    raw = api.post(f"{provider.url}/enroll/telegram/start", data=b"\xff\xfe{", timeout=30)
    assert_clean_refusal(raw, 400)
