"""LAN first, Telegram when the LAN fails: the same conversation, and the message arrives once.

Alice and Bob each run the whole app (headless) in their own network namespace; both are signed
in to the in-process Telegram emulator (the stand-in for Telegram's servers, which are unreachable
here). Bob's cable is pulled while Alice sends: the LAN attempt gets no ACK, the connection is
aborted so its bytes can never arrive later, and the router sends the message through Telegram.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from telethon import TelegramClient

from chimera_tk.app import App, build_app
from chimera_tk.config import Config, LanSettings, TeamSettings, TelegramSettings
from chimera_tk.net.peer.worker import PeerLimits
from chimera_tk.profiles import profile_paths
from chimera_tk.router import Router
from chimera_tk.store import Store
from tests.netns import Host, Network, require_netns
from tests.pki_factory import TeamCA
from tests.telegram_emulator import (
    TEST_API_HASH,
    TEST_API_ID,
    ServerUser,
    TelegramServer,
    install,
    sign_in_session,
)

pytestmark = pytest.mark.netns


class HostedApp:
    """A headless app built and run on a thread that lives in ``host``'s namespace."""

    def __init__(self, host: Host, data_dir: Path, name: str, user: ServerUser,
                 server: TelegramServer, ca: TeamCA) -> None:
        self.paths = profile_paths(name, data_dir).ensure()
        ca.write_identity(self.paths.root, user.id)  # LAN identity = Telegram user id
        self.config = Config(
            telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH),
            # this process keeps the suite's loopback-only default: name the test LAN's address
            lan=LanSettings(interval_s=1.0, broadcast_addresses=(host.network.broadcast,)),
            team=TeamSettings(display_name=name))
        self.app: App | None = None
        self._stop = threading.Event()
        self._built = threading.Event()
        self._host = host

        def factory(session: str, api_id: int, api_hash: str) -> TelegramClient:
            client = TelegramClient(session, api_id, api_hash, retry_delay=0)
            install(client, server)
            sign_in_session(client, server, user)
            return client

        self._thread = threading.Thread(target=self._run, args=(factory,), name=name)
        self._thread.start()
        assert self._built.wait(30), f"{name} did not start"

    def _run(self, factory: Callable) -> None:
        self._host.enter_this_thread()
        self.app = build_app(self.paths, self.config, window=False,
                             telegram_client_factory=factory)
        self.app.lan.peer.limits = PeerLimits(ack_timeout_s=2.0)
        self._built.set()
        self.app.run_headless(until=self._stop.is_set)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()

    def store(self) -> Store:
        return Store.open(self.paths.database)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b")) as net:
        yield net


def test_lan_failure_falls_back_to_telegram_and_the_message_arrives_once(
        network: Network, tmp_path: Path) -> None:
    server = TelegramServer(seed=5)
    alice_user = server.add_user("Alice", phone="+15550100")
    bob_user = server.add_user("Bob", phone="+15550200")
    server.send_as(bob_user, alice_user, "hi Alice")  # so each has the other as a dialog
    ca = TeamCA.create()
    alice = HostedApp(network["a"], tmp_path / "a", "alice", alice_user, server, ca)
    bob = HostedApp(network["b"], tmp_path / "b", "bob", bob_user, server, ca)
    try:
        _wait(lambda: bob_user.id in alice.app.lan.verified
              and alice_user.id in bob.app.lan.verified, 20, "both to verify on the LAN")
        _wait(lambda: alice.app.telegram.online and bob.app.telegram.online, 20,
              "Telegram sign-in")

        # first, the LAN works: a message goes over it
        writer = alice.store()
        first = Router(writer, lambda _e: None).send_text(bob_user.id, "over the LAN")
        _wait(lambda: writer.messages.get(first.id).state == "delivered", 20, "LAN delivery")
        assert writer.messages.get(first.id).transport == "lan"

        # then Bob's cable is pulled and Alice writes again
        network["b"].cut_link()
        second = Router(writer, lambda _e: None).send_text(bob_user.id, "cable pulled")
        _wait(lambda: writer.messages.get(second.id).state == "sent", 40,
              "the fallback to Telegram")
        assert writer.messages.get(second.id).transport == "telegram"
        assert [m.text for m in server.messages_of(bob_user, alice_user)].count(
            "cable pulled") == 1

        reader = bob.store()
        _wait(lambda: any(m.text == "cable pulled"
                          for m in reader.messages.latest_page(alice_user.id, 20)), 20,
              "Bob to receive it through Telegram")
        network["b"].restore_link()
        _wait(lambda: bob_user.id in alice.app.lan.verified, 20, "the LAN to come back")
        time.sleep(2)  # anything the LAN had buffered would arrive by now
        texts = [m.text for m in reader.messages.latest_page(alice_user.id, 50)]
        assert texts.count("cable pulled") == 1
        assert texts.count("over the LAN") == 1
        routes = {m.text: m.transport for m in reader.messages.latest_page(alice_user.id, 50)}
        assert routes["cable pulled"] == "telegram" and routes["over the LAN"] == "lan"
        writer.close()
        reader.close()
    finally:
        alice.stop()
        bob.stop()
