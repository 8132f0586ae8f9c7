"""The Settings window on Xvfb against the real app: every value round-trips, bad values are
refused field by field, the theme switches live, and the Certificate panel renews and revokes a
real certificate issued by the built-in CA (a ``chimera-identity serve`` process on loopback).

Telegram runs on the in-process emulator (it stands in for Telegram's servers, which tests must
not reach). The LAN, where it runs, uses free loopback ports and the loopback broadcast.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from chimera_tk.app import App, build_app
from chimera_tk.config import (
    Config,
    FileSettings,
    LanSettings,
    TeamSettings,
    TelegramSettings,
    UiSettings,
    load_config,
)
from chimera_tk.pki.identity import load_identity
from chimera_tk.profiles import ProfilePaths
from chimera_tk.views.settings import SettingsDialog
from chimera_tk.views.settings.certificate_info import CrlState, relative_time, summarize
from chimera_tk.views.settings.form import (
    FIELDS,
    PAGES,
    FieldError,
    config_to_form,
    validate_form,
)
from chimera_tk.views.theme import DARK, LIGHT
from tests.conftest import pump_until
from tests.telegram_emulator import TEST_API_HASH, TEST_API_ID, TelegramServer
from tests.test_identity_lifecycle import enrolled, fetch_crl
from tests.test_identity_server import RunningCA, free_port, running_ca
from tests.test_telegram_worker import _factory

SCREENSHOTS = os.environ.get("CHIMERA_SCREENSHOT_DIR")


def _every_value_changed(downloads: Path) -> Config:
    """A config in which every value the dialog shows differs from its default."""
    return Config(
        telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH, seed_messages=25),
        lan=LanSettings(enabled=False, discovery_port=40050, announce_port=40051,
                        peer_port=40052, interval_s=2.5,
                        broadcast_addresses=("10.9.0.255", "192.168.7.255"), crl_refresh_s=42.0),
        team=TeamSettings(identity_url="https://id.example.test:9443",
                          ca_url="https://ca.example.test:9000", cert_lifetime_hours=48,
                          display_name="Ana at the front desk"),
        ui=UiSettings(theme="dark", close_to_tray=False, start_minimised=True,
                      notifications=False, notification_preview=False, do_not_disturb=True,
                      received_deletes="mark"),
        files=FileSettings(downloads_dir=str(downloads), auto_download="never",
                           auto_download_max_mb=7))


# --- the pure form ------------------------------------------------------------------------------

def test_every_field_of_the_form_names_a_config_key() -> None:
    for key in FIELDS:
        section, name = key.split(".")
        assert name in {f.name for f in dataclasses.fields(getattr(Config(), section))}


def test_every_config_value_has_a_field_in_the_dialog() -> None:
    for section in dataclasses.fields(Config):
        for name in dataclasses.fields(getattr(Config(), section.name)):
            key = f"{section.name}.{name.name}"
            assert key in FIELDS or key == "ui.close_to_tray_explained"  # state, not a choice
    assert all(FIELDS[key].hint for key in FIELDS)


def test_form_round_trip_keeps_every_value(tmp_path: Path) -> None:
    config = _every_value_changed(tmp_path)
    assert validate_form(config_to_form(config), Config()) == config
    assert validate_form(config_to_form(Config()), config) == Config()


@pytest.mark.parametrize(("key", "text", "fragment"), [
    ("lan.peer_port", "0", "0 is not a port number: use 1 to 65535"),
    ("lan.discovery_port", "70000", "70000 is not a port number"),
    ("lan.announce_port", "5o051", "'5o051' is not a whole number"),
    ("lan.interval_s", "abc", "'abc' is not a number of seconds"),
    ("lan.interval_s", "0.1", "use 0.2 to 3600 seconds"),
    ("lan.crl_refresh_s", "601", "use 1 to 600 seconds"),
    ("team.identity_url", "http://id.example.test", "https://HOST:PORT"),
    ("team.ca_url", "https://ca.example.test/path", "https://HOST:PORT"),
    ("lan.broadcast_addresses", "10.0.0.255, 10.0.0.256", "'10.0.0.256' is not an IPv4"),
    ("team.cert_lifetime_hours", "300", "300 hours is out of range: use 1 to 264 hours"),
    ("telegram.api_id", "12ab", "digits only"),
    ("telegram.api_hash", "not-a-hash", "32 letters and digits"),
    ("files.auto_download_max_mb", "-1", "use 0 to 4096"),
    ("files.downloads_dir", "relative/folder", "whole path"),
])
def test_invalid_value_is_refused_with_a_message_naming_its_field(
        key: str, text: str, fragment: str) -> None:
    values = config_to_form(Config())
    values[key] = text
    errors = validate_form(values, Config())
    assert isinstance(errors, list)
    assert [error.field for error in errors] == [key]
    assert fragment in errors[0].message


def test_api_id_without_hash_is_refused_on_the_missing_field() -> None:
    values = config_to_form(Config())
    values["telegram.api_id"] = "12345"
    assert validate_form(values, Config()) == [FieldError(
        "telegram.api_hash", "api_id and api_hash go together: fill in both or neither")]


def test_same_discovery_and_announce_port_is_refused() -> None:
    values = config_to_form(Config())
    values["lan.announce_port"] = values["lan.discovery_port"]
    errors = validate_form(values, Config())
    assert isinstance(errors, list) and errors[0].field == "lan.announce_port"


def test_urls_are_saved_in_their_one_accepted_form() -> None:
    values = config_to_form(Config())
    values["team.identity_url"] = " https://ID.Example.test:9443/ "
    config = validate_form(values, Config())
    assert isinstance(config, Config)
    assert config.team.identity_url == "https://id.example.test:9443"


def test_relative_time_says_how_far_in_whole_units() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert relative_time(now + timedelta(days=9, hours=5), now) == "in 9 days"
    assert relative_time(now + timedelta(hours=1, minutes=59), now) == "in 1 hour"
    assert relative_time(now + timedelta(minutes=9, seconds=30), now) == "in 9 minutes"
    assert relative_time(now - timedelta(days=2), now) == "2 days ago"


def test_no_certificate_summary_says_how_to_get_one() -> None:
    summary = summarize(None, revoked=False, crl=CrlState(), auto_renew=False)
    assert summary.state == "none" and "New certificate" in summary.state_text


# --- the window ---------------------------------------------------------------------------------

@pytest.fixture
def window_app(x_display: str, paths: ProfilePaths) -> Iterator[App]:
    """The whole app, window shown; Telegram (if credentials get saved) is the emulator."""
    app = build_app(paths, Config(lan=LanSettings(enabled=False)), theme="light",
                    telegram_client_factory=_factory(TelegramServer(seed=3)))
    app.start()
    app.root.update()
    assert pump_until(app, lambda: app._transports_built)
    yield app
    app.shutdown()


def _open(app: App, page: str | None = None) -> SettingsDialog:
    app.open_settings(page)
    app.root.update()
    assert app.settings_dialog is not None and app.settings_dialog.winfo_exists()
    return app.settings_dialog


def _screenshot(app: App, name: str) -> None:
    if SCREENSHOTS and shutil.which("import"):
        for _ in range(5):
            app.root.update()
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-window", "root", str(Path(SCREENSHOTS) / f"{name}.png")],
                       check=True, timeout=30)


@pytest.mark.gui
def test_every_value_round_trips_through_the_dialog(window_app: App, tmp_path: Path) -> None:
    wanted = _every_value_changed(tmp_path)
    dialog = _open(window_app)
    for key, value in config_to_form(wanted).items():
        dialog.set_value(key, value)
    dialog.save_button.invoke()
    window_app.root.update()
    assert dialog.notice.cget("text").startswith("Saved.")
    assert load_config(window_app.paths.config_file) == wanted
    assert window_app.config == wanted
    dialog.close()
    reopened = _open(window_app)
    expected = config_to_form(wanted)
    for key, value in reopened.form_values().items():
        spec = FIELDS[key]
        shown = dict(spec.choices).get(str(expected[key]), expected[key])
        assert value == shown, key


@pytest.mark.gui
@pytest.mark.parametrize(("key", "text", "fragment"), [
    ("lan.peer_port", "0", "use 1 to 65535"),
    ("lan.discovery_port", "70000", "use 1 to 65535"),
    ("lan.interval_s", "abc", "not a number of seconds"),
    ("team.identity_url", "ftp://id.example.test", "https://HOST"),
    ("lan.broadcast_addresses", "192.168.1.300", "not an IPv4 address"),
    ("team.cert_lifetime_hours", "300", "use 1 to 264 hours"),
])
def test_invalid_value_shows_its_message_and_saves_nothing(
        window_app: App, key: str, text: str, fragment: str) -> None:
    before = window_app.config
    dialog = _open(window_app)
    dialog.set_value(key, text)
    dialog.event_generate("<Return>")  # Enter saves
    window_app.root.update()
    assert fragment in dialog.error_text(key)
    assert dialog.errors[key].winfo_ismapped()
    page = next(name for name, fields in PAGES.items() if any(f.key == key for f in fields))
    assert dialog.notebook.select() == str(dialog.pages[page])
    assert "Not saved" in dialog.notice.cget("text")
    assert not window_app.paths.config_file.exists()
    assert window_app.config == before
    dialog.set_value(key, config_to_form(before)[key])
    assert dialog.save()
    assert not dialog.errors[key].winfo_ismapped()
    assert load_config(window_app.paths.config_file) == before


@pytest.mark.gui
def test_theme_change_applies_live_to_ttk_and_the_message_view(window_app: App) -> None:
    import sv_ttk

    text = window_app.window.chat.messages.text
    background = _role(str(text.cget("background")))  # the view picks which role it uses
    assert str(text.cget("foreground")) == LIGHT.text
    dialog = _open(window_app, "General")
    dialog.set_value("ui.theme", "dark")
    assert dialog.save()
    window_app.root.update()
    assert sv_ttk.get_theme(window_app.root) == "dark"
    assert str(text.cget("background")) == getattr(DARK, background)
    assert str(text.cget("foreground")) == DARK.text
    assert str(text.tag_cget("out", "background")) == DARK.bubble_out
    assert load_config(window_app.paths.config_file).ui.theme == "dark"
    _screenshot(window_app, "settings-general-dark")


def _role(colour: str) -> str:
    return next(f.name for f in dataclasses.fields(LIGHT) if getattr(LIGHT, f.name) == colour)


@pytest.mark.gui
def test_previewed_theme_is_put_back_when_closed_without_saving(window_app: App) -> None:
    import sv_ttk

    dialog = _open(window_app, "General")
    dialog.set_value("ui.theme", "dark")
    dialog.inputs["ui.theme"].event_generate("<<ComboboxSelected>>")
    window_app.root.update()
    assert sv_ttk.get_theme(window_app.root) == "dark"
    dialog.event_generate("<Escape>")
    window_app.root.update()
    assert not dialog.winfo_exists()
    assert sv_ttk.get_theme(window_app.root) == "light"
    assert not window_app.paths.config_file.exists()


@pytest.mark.gui
def test_ctrl_comma_opens_settings_and_the_certificate_label_opens_its_page(
        window_app: App) -> None:
    window_app.root.event_generate("<Control-comma>")
    window_app.root.update()
    dialog = window_app.settings_dialog
    assert dialog is not None and dialog.winfo_exists()
    dialog.close()
    label = window_app.window.status_bar.labels["certificate"]
    label.event_generate("<Button-1>", x=2, y=2)
    window_app.root.update()
    dialog = window_app.settings_dialog
    assert dialog.winfo_exists()
    assert dialog.notebook.select() == str(dialog.pages["Team & Certificate"])
    assert dialog.certificate.summary.state == "none"
    assert dialog.certificate.renew_button.instate(["disabled"])
    window_app.window.settings_button.invoke()  # a second open brings the same window forward
    assert window_app.settings_dialog is dialog


@pytest.mark.gui
def test_tab_reaches_every_control_of_every_page(window_app: App) -> None:
    dialog = _open(window_app)
    for name, fields in PAGES.items():
        dialog.notebook.select(dialog.pages[name])
        window_app.root.update()
        reached = []
        widget = dialog.inputs[fields[0].key]
        for _ in range(60):
            reached.append(widget)
            widget = widget.tk_focusNext()
        for spec in fields:
            assert dialog.inputs[spec.key] in reached, spec.key
        assert dialog.save_button in reached


# --- the certificate panel, with a real CA ------------------------------------------------------

@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCA]:
    with running_ca(tmp_path_factory.mktemp("settings-ca")) as running:
        yield running


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def member_app(x_display: str, ca: RunningCA, tmp_path: Path) -> Iterator[App]:
    """A team member's window: certificate from the CA (issued 3 minutes ago, 10-minute life),
    LAN on free loopback ports."""
    paths, config, _identity = enrolled(ca, tmp_path, issued_ago=timedelta(minutes=3))
    lan = LanSettings(discovery_port=_free_udp_port(), announce_port=_free_udp_port(),
                      peer_port=free_port(), broadcast_addresses=("127.255.255.255",))
    app = build_app(paths, dataclasses.replace(config, lan=lan), theme="light")
    app.start()
    app.root.update()
    assert pump_until(app, lambda: app.lan is not None, timeout=10)
    yield app
    app.shutdown()


def _values(dialog: SettingsDialog) -> dict[str, str]:
    return {key: str(label.cget("text")) for key, label in dialog.certificate.values.items()}


@pytest.mark.gui
def test_certificate_page_shows_id_serial_and_expiry_of_the_real_certificate(
        member_app: App) -> None:
    identity = load_identity(member_app.paths)
    dialog = _open(member_app, "Team & Certificate")
    shown = _values(dialog)
    assert shown["user_id"] == str(identity.user_id)
    assert shown["serial"] == f"{identity.serial:x}"
    assert shown["not_after"].startswith(f"{identity.not_after.astimezone():%Y-%m-%d %H:%M}")
    assert "(in " in shown["not_after"] and "minutes)" in shown["not_after"]
    assert "Root" in shown["issuer"] or "CN=" in shown["issuer"]
    assert shown["state_text"] in ("Valid", "Valid, renewal due")
    assert dialog.certificate.renew_button.instate(["!disabled"])
    _screenshot(member_app, "settings-certificate-light")


@pytest.mark.gui
def test_renew_now_renews_and_shows_the_new_expiry(member_app: App) -> None:
    old = load_identity(member_app.paths)
    dialog = _open(member_app, "Team & Certificate")
    panel = dialog.certificate
    panel.renew_button.invoke()
    assert panel.busy and panel.renew_button.instate(["disabled"])
    assert pump_until(member_app, lambda: not panel.busy, timeout=30)
    assert panel.message.cget("text").startswith("Renewed:"), panel.message.cget("text")
    new = load_identity(member_app.paths)
    assert new.serial != old.serial and new.not_after > old.not_after
    shown = _values(dialog)
    assert shown["serial"] == f"{new.serial:x}"
    assert shown["not_after"].startswith(f"{new.not_after.astimezone():%Y-%m-%d %H:%M}")
    assert member_app.lan.identity.serial == new.serial  # the LAN presents the new one


@pytest.mark.gui
def test_revoke_with_reason_note_and_confirmation_puts_the_serial_on_the_crl(
        member_app: App, ca: RunningCA) -> None:
    identity = load_identity(member_app.paths)
    dialog = _open(member_app, "Team & Certificate")
    panel = dialog.certificate
    panel.revoke_button.invoke()
    member_app.root.update()
    revoke = panel.revoke_dialog
    revoke.action.invoke()  # no reason chosen yet
    assert revoke.step == "reason" and "choose why" in revoke.error.cget("text")
    revoke.reason_box.set("1 — KeyCompromise")
    revoke.note_entry.insert(0, "laptop left on the train")
    revoke.action.invoke()
    assert revoke.step == "confirm"
    _screenshot(member_app, "settings-revoke-confirm-light")
    texts = " ".join(str(w.cget("text")) for w in _labels(revoke))
    assert f"serial {identity.serial:x}" in texts and "laptop left on the train" in texts
    assert fetch_crl(ca).get_revoked_certificate_by_serial_number(identity.serial) is None
    revoke.action.invoke()
    assert pump_until(member_app, lambda: not revoke.winfo_exists(), timeout=30)
    entry = fetch_crl(ca).get_revoked_certificate_by_serial_number(identity.serial)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert pump_until(member_app, lambda: panel.summary.state == "revoked", timeout=10)
    assert member_app.lan is None
    assert "revoked" in member_app.window.status_bar.text("lan")
    assert panel.revoke_button.instate(["disabled"])
    assert panel.message.cget("text").startswith(f"Certificate serial {identity.serial:x} revoked")


def _labels(widget) -> list:
    found = []
    for child in widget.winfo_children():
        if child.winfo_class() == "TLabel":
            found.append(child)
        found += _labels(child)
    return found


@pytest.mark.gui
def test_renew_refused_by_the_ca_shows_the_reason_not_a_traceback(
        member_app: App, tmp_path: Path) -> None:
    member_app.config = dataclasses.replace(member_app.config, team=dataclasses.replace(
        member_app.config.team, ca_url=f"https://127.0.0.1:{free_port()}"))  # nobody listens
    dialog = _open(member_app, "Team & Certificate")
    panel = dialog.certificate
    panel.renew_button.invoke()
    assert pump_until(member_app, lambda: not panel.busy, timeout=40)
    message = panel.message.cget("text")
    assert message and "Traceback" not in message and not message.startswith("Renewed")
    assert str(panel.message.cget("foreground")) == LIGHT.error


@pytest.mark.gui
def test_new_certificate_with_an_invite_joins_the_team_from_the_window(
        window_app: App, ca: RunningCA) -> None:
    dialog = _open(window_app, "Team & Certificate")
    panel = dialog.certificate
    assert panel.summary.state == "none"
    panel.new_button.invoke()
    window_app.root.update()
    enroll = panel.enroll_dialog
    enroll.action.invoke()  # nothing pasted yet
    assert "paste the invite code" in enroll.error.cget("text")
    enroll.invite.insert(0, "chimera-invite-damaged")
    enroll.action.invoke()
    assert pump_until(window_app, lambda: enroll.error.cget("text") != "", timeout=10)
    assert enroll.winfo_exists() and load_identity(window_app.paths) is None
    enroll.invite.delete(0, "end")
    enroll.invite.insert(0, ca.invite(7001, "Ana Souza"))
    enroll.action.invoke()
    assert pump_until(window_app, lambda: not enroll.winfo_exists(), timeout=30)
    assert pump_until(window_app, lambda: panel.summary.state == "valid", timeout=10)
    identity = load_identity(window_app.paths)
    assert identity.user_id == 7001
    assert _values(dialog)["serial"] == f"{identity.serial:x}"
    saved = load_config(window_app.paths.config_file).team
    assert (saved.identity_url, saved.ca_url, saved.display_name) == (ca.url, ca.url, "Ana Souza")
    assert panel.message.cget("text").startswith("Joined: new certificate serial")
    assert window_app.window.status_bar.text("lan") == "LAN: off (lan.enabled = false)"


@pytest.mark.gui
def test_saved_lan_settings_restart_the_lan_at_once(member_app: App) -> None:
    running = member_app.lan
    dialog = _open(member_app, "LAN")
    dialog.set_value("lan.interval_s", "2")
    assert dialog.save()
    assert member_app.lan is not None and member_app.lan is not running
    assert member_app.lan._settings.interval_s == 2.0
    assert running not in member_app.workers
    dialog.set_value("lan.enabled", False)
    assert dialog.save()
    assert member_app.lan is None
    assert pump_until(member_app, lambda: member_app.window.status_bar.text("lan")
                      == "LAN: off (lan.enabled = false)")
    assert dialog.notice.cget("text") == "Saved."  # nothing here waits for a restart


@pytest.mark.gui
def test_download_settings_apply_without_a_restart(window_app: App) -> None:
    dialog = _open(window_app, "Files")
    dialog.set_value("files.auto_download", "never")
    dialog.set_value("files.auto_download_max_mb", "5")
    assert dialog.save()
    assert dialog.notice.cget("text") == "Saved."  # the transports are rebuilt with them
    assert load_config(window_app.paths.config_file).files == FileSettings(
        auto_download="never", auto_download_max_mb=5)
    assert window_app.config.files == FileSettings(auto_download="never",
                                                   auto_download_max_mb=5)


@pytest.mark.gui
def test_a_config_file_that_cannot_be_written_is_reported_and_nothing_changes(
        window_app: App) -> None:
    window_app.paths.config_file.mkdir()  # the rename onto it fails, even for root
    before = window_app.config
    dialog = _open(window_app, "General")
    dialog.set_value("ui.close_to_tray", False)
    assert not dialog.save()
    assert dialog.notice.cget("text").startswith(
        f"Not saved: cannot write {window_app.paths.config_file}")
    assert window_app.config == before
    assert not list(window_app.paths.root.glob(".config.toml.*"))  # no temporary file left
