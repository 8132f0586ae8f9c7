"""The pairing dialog in the real window: make a personal certificate, compare the code with a
caller, confirm or reject, unpair. The caller is a real PairingWorker over loopback TLS."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.config import Config, LanSettings
from chimera_tk.net.pairing.events import PairingCode, PairingFinished
from chimera_tk.net.pairing.worker import PairingWorker
from chimera_tk.pki.certs import certificate_pem
from chimera_tk.pki.keys import generate_private_key, private_key_to_pem
from chimera_tk.pki.pairing import PinStore, make_personal_certificate, pins_path
from chimera_tk.profiles import ProfilePaths
from chimera_tk.views.pairing_dialog import countdown, parse_address, untrusted_nearby
from tests.conftest import pump_until

pytestmark = pytest.mark.gui

ALICE, BOB = 1001, 2002


@pytest.fixture
def solo_app(x_display: str, paths: ProfilePaths) -> Iterator[object]:
    """The app on a profile with no team; the LAN is off so no fixed port is taken, and the
    pairing port is any free one."""
    from chimera_tk.app import build_app

    built = build_app(paths, Config(lan=LanSettings(enabled=False, pairing_port=0)),
                      theme="light")
    built.start()
    built.root.update()
    yield built
    built.shutdown()


class Caller:
    """Bob, on another "computer": a personal certificate and a pairing worker."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        key = generate_private_key()
        self.cert = make_personal_certificate(key, BOB)
        (folder / "key.pem").write_bytes(private_key_to_pem(key))
        (folder / "cert.pem").write_text(certificate_pem(self.cert))
        self.pins = PinStore(folder / "pins.json")
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.worker = PairingWorker(BOB, "Bob", folder / "key.pem", folder / "cert.pem",
                                    self.pins, self.events.put, window_s=30)

    def next(self, kind: type, app: object) -> object:
        found: list[object] = []

        def arrived() -> bool:
            while not self.events.empty():
                event = self.events.get()
                if isinstance(event, kind):
                    found.append(event)
            return bool(found)

        assert pump_until(app, arrived, timeout=15), f"no {kind.__name__}"
        return found[0]


def _open_with_identity(app) -> object:
    app.root.event_generate("<Control-P>")  # Ctrl+Shift+P
    assert pump_until(app, lambda: getattr(app, "pairing_dialog", None) is not None)
    dialog = app.pairing_dialog
    dialog.user_id_entry.insert(0, "12x")
    dialog.make_button.invoke()
    assert "digits only" in str(dialog.status.cget("text"))
    dialog.user_id_entry.delete(0, "end")
    dialog.user_id_entry.insert(0, str(ALICE))
    dialog.make_button.invoke()
    assert app.identity.user_id == ALICE and app.identity.self_signed
    dialog = app.pairing_dialog
    assert pump_until(app, lambda: app.pairing.listening)
    assert pump_until(app, lambda: "for 2:00" in str(dialog.window_label.cget("text"))
                      or "for 1:5" in str(dialog.window_label.cget("text")))
    return dialog


def test_pairing_in_the_window_after_making_a_personal_certificate(solo_app,
                                                                   tmp_path: Path) -> None:
    app = solo_app
    dialog = _open_with_identity(app)
    bob = Caller(tmp_path / "bob")
    try:
        bob.worker.pair_with("127.0.0.1", app.pairing.port)
        bobs_code = bob.next(PairingCode, app)
        assert pump_until(app, lambda: dialog.code_shown is not None)
        assert dialog.code_label.cget("text") == bobs_code.code
        assert "user 2002 (Bob)" in str(dialog.code_peer.cget("text"))
        dialog.confirm_button.invoke()
        assert dialog.confirm_button.instate(["disabled"])
        bob.worker.confirm()
        assert bob.next(PairingFinished, app).paired
        assert pump_until(app, lambda: "Paired with user 2002 (Bob)"
                          in str(dialog.status.cget("text")))
        pins = PinStore(pins_path(app.paths))
        assert pins.get(BOB).certificate() == bob.cert
        assert dialog.paired.get_children() == (str(BOB),)
        assert bob.pins.get(ALICE) is not None

        dialog.paired.selection_set(str(BOB))
        dialog.unpair_button.invoke()
        assert pins.all() == [] and dialog.paired.get_children() == ()
    finally:
        bob.worker.stop()
        bob.worker.join(5)


def test_rejecting_the_code_in_the_window_pins_nothing(solo_app, tmp_path: Path) -> None:
    app = solo_app
    dialog = _open_with_identity(app)
    bob = Caller(tmp_path / "bob")
    try:
        bob.worker.pair_with("127.0.0.1", app.pairing.port)
        bob.next(PairingCode, app)
        bob.worker.confirm()  # Bob says yes; Alice sees another code (a MITM) and rejects
        assert pump_until(app, lambda: dialog.code_shown is not None)
        dialog.reject_button.invoke()
        finished = bob.next(PairingFinished, app)
        assert not finished.paired and "rejected" in finished.reason
        assert pump_until(app, lambda: "Nothing was saved" in str(dialog.status.cget("text")))
        assert PinStore(pins_path(app.paths)).all() == [] and bob.pins.all() == []
    finally:
        bob.worker.stop()
        bob.worker.join(5)


def test_closing_the_dialog_closes_the_pairing_port_and_a_click_on_the_lan_state_reopens_it(
        solo_app) -> None:
    app = solo_app
    dialog = _open_with_identity(app)
    dialog.destroy()
    assert pump_until(app, lambda: not app.pairing.listening, timeout=5)
    app.window.status_bar.labels["lan"].event_generate("<Button-1>")
    assert pump_until(app, lambda: app.pairing_dialog.winfo_exists() and app.pairing.listening)
    assert app.pairing_dialog is not dialog


def test_nearby_lists_only_people_not_trusted_yet() -> None:
    announced = {1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3", 9: "10.0.0.9"}
    assert untrusted_nearby(announced, {1: "10.0.0.1"}, {3}, own_id=9) == [(2, "10.0.0.2")]
    assert countdown(119.2) == "2:00" and countdown(0) == "0:00" and countdown(61) == "1:01"
    assert parse_address(" 192.168.1.23 ") == "192.168.1.23"
    assert parse_address("bobs-laptop.local") == "bobs-laptop.local"
    with pytest.raises(Exception, match="not an address"):
        parse_address("rm -rf /")
