"""Files in the real window: attach, drop, cancel, open; and the LAN status in the status bar."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.config import Config, LanSettings
from chimera_tk.profiles import ProfilePaths
from tests.conftest import pump_until
from tests.pki_factory import TeamCA

pytestmark = pytest.mark.gui


def _chat_with_ana(app) -> None:
    app.store.dialogs.upsert(1, "user", "Ana")
    app.window.dialogs.refresh()
    app.window.dialogs.tree.selection_set("1")
    assert pump_until(app, lambda: app.window.chat.dialog_id == 1)


def test_attached_file_is_hashed_off_the_tk_thread_and_queued(app, tmp_path: Path) -> None:
    _chat_with_ana(app)
    source = tmp_path / "minutes.txt"
    source.write_text("the minutes of the meeting")
    app.window.chat.attach(source)
    assert pump_until(app, lambda: app.store.messages.count(1) == 1)
    message = app.store.messages.latest_page(1, 1)[0]
    file = app.store.files.get(message.file_id)
    assert (file.name, file.size, file.path) == ("minutes.txt", 26, str(source.resolve()))
    assert file.sha256 == hashlib.sha256(b"the minutes of the meeting").hexdigest()
    assert message.state == "queued"
    assert pump_until(app, lambda: "minutes.txt" in app.window.chat.messages.visible_text())


def test_files_dropped_on_the_chat_are_sent(app, tmp_path: Path) -> None:
    _chat_with_ana(app)
    assert app.window.chat.enable_drop()  # the tkdnd extension loads on this platform
    first, second = tmp_path / "a b.txt", tmp_path / "c.txt"
    first.write_text("1")
    second.write_text("2")

    class Drop:
        data = app.root.tk.call("list", str(first), str(second))

    app.window.chat._on_drop(Drop())
    assert pump_until(app, lambda: app.store.messages.count(1) == 2)
    names = sorted(app.store.files.get(m.file_id).name
                   for m in app.store.messages.latest_page(1, 5))
    assert names == ["a b.txt", "c.txt"]


def test_a_vanished_file_is_a_clear_error_in_the_composer(app, tmp_path: Path) -> None:
    _chat_with_ana(app)
    app.window.chat.attach(tmp_path / "gone.pdf")
    assert pump_until(app, lambda: "gone.pdf" in str(app.window.chat.composer.error.cget("text")))
    assert app.store.messages.count(1) == 0


def test_cancelling_a_queued_file_marks_it_not_sent(app, tmp_path: Path) -> None:
    from chimera_tk.events import MessageChanged

    _chat_with_ana(app)
    source = tmp_path / "big.iso"
    source.write_bytes(b"x" * 1000)
    message = app.router.send_file(1, source)
    app.cancel_message(message.id)
    assert app.store.messages.get(message.id).state == "failed"
    assert app.store.outbox.get(message.id).last_error == "cancelled"
    app.events.post(MessageChanged(app.store.messages.get(message.id)))
    assert pump_until(app, lambda: "not sent!" in app.window.chat.messages.visible_text())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def enrolled_app(x_display: str, paths: ProfilePaths) -> Iterator[object]:
    """The app on a profile that holds a team certificate, its LAN up on loopback only."""
    from chimera_tk.app import build_app

    TeamCA.create().write_identity(paths.root, 4242)
    config = Config(lan=LanSettings(peer_port=_free_port()))
    app = build_app(paths, config, theme="dark")
    app.start()
    yield app
    app.shutdown()


def test_status_bar_shows_the_certificate_and_the_lan(enrolled_app) -> None:
    bar = enrolled_app.window.status_bar
    assert pump_until(enrolled_app, lambda: bar.text("certificate").startswith(
        "Certificate: 4242 · until"))
    assert pump_until(enrolled_app, lambda: bar.text("lan") == "LAN: looking for peers")
    assert enrolled_app.lan is not None and enrolled_app.lan.peer.port > 0


def test_without_a_certificate_the_status_bar_says_how_to_join(app) -> None:
    bar = app.window.status_bar
    assert pump_until(app, lambda: "join a team" in bar.text("lan"))
    assert bar.text("certificate") == "Certificate: none"


@pytest.fixture
def expiring_app(x_display: str, paths: ProfilePaths) -> Iterator[object]:
    """The app whose team certificate expires about ten seconds after it was made (ample for
    the LAN to start first, even on a loaded CI machine)."""
    from chimera_tk.app import build_app

    ca = TeamCA.create()
    # valid from a minute ago until ten seconds from now
    ca.write_identity(paths.root, 4343, days=70 / 86400, starts_in_days=-60 / 86400)
    app = build_app(paths, Config(lan=LanSettings(peer_port=_free_port())), theme="light")
    app.start()
    yield app
    app.shutdown()


def test_a_certificate_expiring_during_the_session_turns_the_lan_off(expiring_app) -> None:
    app = expiring_app
    bar = app.window.status_bar
    assert pump_until(app, lambda: bar.text("lan") == "LAN: looking for peers", timeout=8)
    port = app.lan.peer.port
    assert pump_until(app, lambda: "certificate expired" in bar.text("lan"), timeout=20)
    assert bar.text("certificate").endswith("expired")
    assert app.lan.expired and not app.lan.can_reach(app.store.dialogs.ensure(1, "user", "x"))

    def port_closed() -> bool:  # the accept loop lets go of its socket within half a second
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex(("127.0.0.1", port)) != 0

    assert pump_until(app, port_closed, timeout=5)
