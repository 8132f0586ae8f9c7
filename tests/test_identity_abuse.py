"""The identity provider and CA under abuse: oversize bodies, slow clients, concurrent use of one
token or invite, and code guessing spread over many addresses.

The CA is the shipped ``chimera-identity serve`` (a subprocess on 127.0.0.1, see
test_identity_server.running_ca); the Telegram-code tests use the in-process provider and the
Telegram emulator of test_identity_telegram. Many source addresses are real: Linux answers on all
of 127.0.0.0/8, so a client bound to 127.0.0.N is a different address to the server.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chimera_tk.identity.layout import AuthorityFiles
from chimera_tk.identity.server import BODY_TIMEOUT_S, KEEPALIVE_TIMEOUT_S, MAX_BODY_BYTES
from chimera_tk.pki.invite import parse_invite
from chimera_tk.pki.keys import build_csr, csr_to_pem, generate_private_key
from tests.test_identity_server import (
    IDENTITY_CLI,
    RunningCA,
    _wait_for_health,
    assert_clean_refusal,
    free_port,
    running_ca,
)
from tests.test_identity_telegram import (  # noqa: F401  (fixtures used by name)
    Provider,
    api,
    member,
    provider,
    received_code,
    start,
    telegram,
)

SLOW_CLIENTS = 200


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCA]:
    with running_ca(tmp_path_factory.mktemp("abuse")) as running:
        yield running


def _port(ca: RunningCA) -> int:
    return int(ca.url.rsplit(":", 1)[1])


def _tls_context(ca: RunningCA) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.root_pem))
    context.check_hostname = False  # the server certificate names the URL's host, checked
    return context                  # elsewhere; here only the abuse matters


def _certificates_of(ca: RunningCA, user_id: int) -> int:
    with sqlite3.connect(AuthorityFiles(ca.directory).state) as conn:
        return conn.execute("SELECT count(*) FROM certificates WHERE user_id = ?",
                            (user_id,)).fetchone()[0]


def _serve_log_has_no_traceback(ca: RunningCA) -> None:
    log = (ca.directory.parent / "serve.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-2000:]


# -- oversize bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/enroll/invite", "/1.0/sign", "/1.0/revoke", "/1.0/renew"])
def test_an_oversize_body_is_413_on_every_route(ca: RunningCA, route: str) -> None:
    body = b'{"csr": "' + b"A" * (MAX_BODY_BYTES * 16) + b'"}'
    assert_clean_refusal(ca.post(route, body), status=413)
    assert ca.get("/health").json() == {"status": "ok"}
    _serve_log_has_no_traceback(ca)


def test_a_body_announced_as_ten_gigabytes_is_refused_after_the_cap(ca: RunningCA) -> None:
    """The client claims 10 GB and sends 256 KiB of it: the server answers 413 without waiting
    for the rest (it would wait forever) and keeps serving."""
    connection = http.client.HTTPSConnection("127.0.0.1", _port(ca), timeout=10,
                                             context=_tls_context(ca))
    connection.putrequest("POST", "/1.0/sign")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(10 * 1024**3))
    connection.endheaders()
    with contextlib.suppress(OSError):  # the server may have answered and closed already
        connection.send(b"{" + b" " * (256 * 1024))
    answer = connection.getresponse()
    assert answer.status == 413
    assert json.loads(answer.read())["status"] == 413
    connection.close()
    assert ca.get("/health").json() == {"status": "ok"}
    _serve_log_has_no_traceback(ca)


# -- slow clients ------------------------------------------------------------------------------


class Trickler:
    """Slowloris: connections that complete TLS, then send a request header one byte at a time,
    never finishing it. Records when the server closes each one."""

    def __init__(self, ca: RunningCA, count: int) -> None:
        context = _tls_context(ca)
        self.sockets: list[ssl.SSLSocket] = []
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", _port(ca)), timeout=10)
            self.sockets.append(context.wrap_socket(raw))
        self.closed_after: dict[int, float] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris")
        self._thread.start()

    def _run(self) -> None:
        header = b"POST /1.0/sign HTTP/1.1\r\nHost: ca\r\nX-Slow: " + b"a" * 10_000
        position = 0
        while not self._stop.is_set() and len(self.closed_after) < len(self.sockets):
            byte = header[position % len(header):position % len(header) + 1]
            position += 1
            for index, sock in enumerate(self.sockets):
                if index in self.closed_after:
                    continue
                try:
                    sock.settimeout(0.01)
                    sock.sendall(byte)
                    if sock.recv(1) == b"":
                        raise ConnectionResetError
                except TimeoutError:
                    pass  # nothing to read: the server still holds the connection open
                except (OSError, ssl.SSLError):
                    self.closed_after[index] = time.monotonic() - self.started
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def _enroll(ca: RunningCA, user_id: int) -> int:
    token = ca.token(user_id)
    csr = csr_to_pem(build_csr(generate_private_key(), user_id))
    return ca.post("/1.0/sign", {"csr": csr, "ott": token}).status_code


def test_slow_clients_do_not_block_an_enrollment_and_are_dropped(ca: RunningCA) -> None:
    half = SLOW_CLIENTS // 2
    silent = [socket.create_connection(("127.0.0.1", _port(ca)), timeout=10)
              for _ in range(half)]  # TCP only: they never start the TLS handshake
    trickler = Trickler(ca, SLOW_CLIENTS - half)
    try:
        began = time.monotonic()
        assert _enroll(ca, 5151) == 201  # a legitimate enrollment while 200 clients dawdle
        enrollment_s = time.monotonic() - began
        assert _certificates_of(ca, 5151) == 1
        deadline = time.monotonic() + KEEPALIVE_TIMEOUT_S + 15
        while len(trickler.closed_after) < len(trickler.sockets) and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(trickler.closed_after) == len(trickler.sockets), (
            f"{len(trickler.closed_after)} of {len(trickler.sockets)} slow clients dropped")
        print(f"\nFIGURE slowloris: enrollment with {SLOW_CLIENTS} slow clients took "
              f"{enrollment_s:.2f} s; {len(trickler.sockets)} header tricklers dropped after "
              f"{max(trickler.closed_after.values()):.1f} s (keep-alive timeout "
              f"{KEEPALIVE_TIMEOUT_S:.0f} s)")
    finally:
        trickler.stop()
        for sock in silent:
            sock.close()
    assert ca.get("/health").json() == {"status": "ok"}
    _serve_log_has_no_traceback(ca)


def test_a_body_that_trickles_in_is_408(ca: RunningCA) -> None:
    sock = _tls_context(ca).wrap_socket(
        socket.create_connection(("127.0.0.1", _port(ca)), timeout=10))
    try:
        sock.sendall(b"POST /enroll/invite HTTP/1.1\r\nHost: ca\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 1000\r\n\r\n{")
        began = time.monotonic()
        answer = b""
        sock.settimeout(0.5)
        while time.monotonic() - began < BODY_TIMEOUT_S + 15:
            try:
                sock.sendall(b" ")
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError):
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    finally:
        sock.close()
    assert ca.get("/health").json() == {"status": "ok"}


# -- concurrent use of one token / invite ------------------------------------------------------


@pytest.fixture(scope="module")
def second_server(ca: RunningCA) -> Iterator[str]:
    """A second ``serve`` on the same CA folder (an admin who started it twice): concurrency
    across processes, not only within one event loop."""
    port = free_port()
    log_path = ca.directory.parent / "serve-2.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*IDENTITY_CLI, "serve", "--dir", str(ca.directory), "--listen",
             f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    other = RunningCA(f"https://127.0.0.1:{port}", ca.directory, ca.root_pem, ca.session)
    try:
        _wait_for_health(other, server, log_path)
        yield other.url
    finally:
        server.terminate()
        server.wait(10)


def _post(url: str, root: Path, path: str, body: dict[str, object]) -> int:
    import requests

    with requests.Session() as session:
        session.trust_env = False
        return session.post(url + path, json=body, verify=str(root), timeout=30).status_code


def _together(count: int, call) -> Counter[int]:
    barrier = threading.Barrier(count)

    def one(index: int) -> int:
        barrier.wait(10)
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        return Counter(pool.map(one, range(count)))


def test_fifty_concurrent_signatures_with_one_token_issue_one_certificate(
        ca: RunningCA, second_server: str) -> None:
    user_id = 6161
    token = ca.token(user_id)
    csrs = [csr_to_pem(build_csr(generate_private_key(), user_id)) for _ in range(50)]
    urls = [ca.url, second_server]
    statuses = _together(50, lambda i: _post(urls[i % 2], ca.root_pem, "/1.0/sign",
                                              {"csr": csrs[i], "ott": token}))
    assert statuses == Counter({201: 1, 401: 49}), statuses
    assert _certificates_of(ca, user_id) == 1
    print(f"\nFIGURE one token, 50 concurrent signatures over 2 servers: {dict(statuses)}; "
          f"certificates issued: {_certificates_of(ca, user_id)}")


def test_fifty_concurrent_redemptions_of_one_invite_give_one_token(
        ca: RunningCA, second_server: str) -> None:
    user_id = 6262
    secret = parse_invite(ca.invite(user_id)).secret
    urls = [ca.url, second_server]
    statuses = _together(50, lambda i: _post(urls[i % 2], ca.root_pem, "/enroll/invite",
                                              {"secret": secret, "id": user_id}))
    assert statuses[200] == 1 and sum(statuses.values()) == 50, statuses
    assert all(400 <= status < 500 for status in statuses if status != 200), statuses
    assert _certificates_of(ca, user_id) == 0


# -- code guessing from many addresses (in-process provider, Telegram emulator) ---------------


def _from_address(running: Provider, address: str, path: str, body: dict[str, object]) -> int:
    context = ssl.create_default_context(
        cafile=str(AuthorityFiles(running.directory).root_certificate))
    context.check_hostname = False
    connection = http.client.HTTPSConnection("127.0.0.1", running.port, timeout=30,
                                             context=context, source_address=(address, 0))
    try:
        connection.request("POST", path, body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_guesses_from_many_addresses_share_one_per_id_lock(
        provider: Provider, api) -> None:  # noqa: F811 (the imported fixtures)
    user = member(provider)
    assert start(api, provider, {"id": user.id}).status_code == 200
    code = received_code(provider, user)
    wrong = [f"{(int(code) + n) % 10**8:08d}" for n in range(1, 31)]
    statuses = _together(30, lambda i: _from_address(
        provider, f"127.0.0.{10 + i % 10}", "/enroll/telegram/finish",
        {"id": user.id, "code": wrong[i]}))
    assert statuses == Counter({401: 5, 403: 25}), statuses
    right = _from_address(provider, "127.0.0.99", "/enroll/telegram/finish",
                          {"id": user.id, "code": code})
    assert right == 403  # locked: the right code no longer helps
    print(f"\nFIGURE 30 concurrent wrong codes from 10 addresses: {dict(statuses)}; then the "
          f"right code: {right}")


def test_code_requests_from_many_addresses_share_one_per_id_limit(
        provider: Provider, api) -> None:  # noqa: F811 (the imported fixtures)
    user = member(provider)
    statuses = _together(12, lambda i: _from_address(
        provider, f"127.0.1.{10 + i}", "/enroll/telegram/start", {"id": user.id}))
    assert statuses == Counter({200: 3, 429: 9}), statuses
    assert len(provider.telegram.messages_of(user, provider.account)) == 3
