"""The "Kept on your LAN" meter: what it counts, where it is stored, and what it shows.

Real SQLite files, real TLS on loopback (tests/test_peer_link.Node), real ``chimera`` processes in
network namespaces, Telegram through the in-process emulator, and the real window on Xvfb.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from chimera_tk.app import App, build_app
from chimera_tk.config import Config, LanSettings, TelegramSettings
from chimera_tk.events import MessageChanged, TransferProgress
from chimera_tk.profiles import ProfilePaths
from chimera_tk.store import Store
from chimera_tk.store.database import LATEST_VERSION, migrations, open_database
from chimera_tk.store.lan_meter import MeterFigures
from chimera_tk.store.records import IncomingMessage, utc_now_ms
from chimera_tk.views.lan_meter_view import meter_text
from tests.conftest import pump_until
from tests.pki_factory import TeamCA

ALICE, BOB = 1001, 2002
MIB = 1 << 20


# -- the repository ------------------------------------------------------------------------------


def _delivered_text(store: Store, dialog_id: int, text: str, uid: str):
    store.dialogs.ensure(dialog_id, "user", f"User {dialog_id}")
    message, _ = store.messages.receive(IncomingMessage(
        dialog_id=dialog_id, uid=uid, sender_id=dialog_id, sender_name="", text=text,
        sent_at=utc_now_ms(), transport="lan"))
    return message


def test_a_message_counts_its_utf8_text_bytes_plus_its_file_size(store: Store) -> None:
    hello = _delivered_text(store, ALICE, "olá 👋", "u1")  # 3 + 1 + 1 + 4 bytes... and 1 space
    assert store.lan_meter.count_delivery(hello) == len("olá 👋".encode()) == 9
    file = store.files.create("plan.pdf", 5 * MIB, state="complete")
    store.dialogs.ensure(BOB, "user", "Bob")
    with store.transaction():
        outgoing = store.messages.add_outgoing(BOB, "the plan", file_id=file.id)
    assert store.lan_meter.count_delivery(outgoing) == 8 + 5 * MIB
    assert store.lan_meter.totals() == MeterFigures(2, 9 + 8 + 5 * MIB)
    assert store.lan_meter.totals(ALICE) == MeterFigures(1, 9)
    assert [(row.dialog_id, row.title, row.figures) for row in store.lan_meter.by_dialog()] == [
        (BOB, "Bob", MeterFigures(1, 8 + 5 * MIB)), (ALICE, "User 1001", MeterFigures(1, 9))]


def test_days_without_traffic_are_zero_and_old_days_fall_out(store: Store) -> None:
    message = _delivered_text(store, ALICE, "abc", "u1")
    store.lan_meter.count_delivery(message, on=date(2026, 11, 20))
    store.lan_meter.count_delivery(message, on=date(2026, 11, 25))
    store.lan_meter.count_delivery(message, on=date(2026, 11, 25))
    store.lan_meter.count_delivery(message, on=date(2026, 11, 1))  # older than the chart
    days = store.lan_meter.by_day(14, today=date(2026, 11, 25))
    assert len(days) == 14 and days[0][0] == date(2026, 11, 12)
    assert {day.day: figures for day, figures in days if figures.messages} == {
        20: MeterFigures(1, 3), 25: MeterFigures(2, 6)}
    assert store.lan_meter.totals() == MeterFigures(4, 12)


def test_the_meter_survives_its_chat_being_removed(store: Store) -> None:
    store.lan_meter.count_delivery(_delivered_text(store, ALICE, "bye", "u1"))
    store.conn.execute("DELETE FROM dialogs WHERE id = ?", (ALICE,))
    assert store.lan_meter.totals() == MeterFigures(1, 3)
    assert store.lan_meter.by_dialog()[0].title == ""


def test_migration_8_adds_an_empty_meter_to_a_schema_7_database(tmp_path: Path) -> None:
    assert [version for version, _ in migrations()] == list(range(1, LATEST_VERSION + 1))
    assert LATEST_VERSION >= 8
    path = tmp_path / "chimera.db"
    old = open_database(path, migrate_to=7)
    old.execute("INSERT INTO dialogs (id, kind, title) VALUES (1, 'user', 'Ana')")
    old.close()
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(path).execute("SELECT * FROM lan_meter")
    store = Store.open(path)
    try:
        assert store.lan_meter.totals() == MeterFigures(0, 0)
        assert store.dialogs.get(1).title == "Ana"
    finally:
        store.close()


def test_status_bar_text_reads_like_the_issue() -> None:
    assert meter_text(MeterFigures(340, 1_234_000_000)) == "Kept on LAN: 1.2 GB · 340 msgs"
    assert meter_text(MeterFigures(1, 12)) == "Kept on LAN: 12 B · 1 msg"


# -- over real TLS on loopback -------------------------------------------------------------------


@pytest.fixture
def team_ca() -> TeamCA:
    return TeamCA.create()


@pytest.fixture
def pair(tmp_path: Path, team_ca: TeamCA) -> Iterator[tuple[object, object]]:
    from tests.test_peer_link import Node

    alice, bob = Node(tmp_path / "alice", ALICE, team_ca), Node(tmp_path / "bob", BOB, team_ca)
    yield alice, bob
    alice.close()
    bob.close()


def test_a_resumed_transfer_counts_the_file_once_on_both_sides(
        pair, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    alice, bob = pair
    caplog.set_level(logging.INFO, logger="chimera_tk.net.peer.worker")
    source = tmp_path / "disk.img"
    size = 96 * MIB
    with open(source, "wb") as out:
        for _ in range(size // MIB):
            out.write(os.urandom(1024) * 1024)
    message_id = alice.send_file(bob, source)
    alice.wait_for(lambda e: isinstance(e, TransferProgress) and e.message_id == message_id)
    alice.worker.cancel(message_id)  # the link drops mid-file: bob keeps his partial file
    assert alice.finished(message_id).message.state == "failed"
    assert bob.store.lan_meter.totals() == alice.store.lan_meter.totals() == MeterFigures(0, 0)

    alice.store.outbox.requeue(message_id)  # the user's "try again"
    for _attempt in range(5):  # the first may meet the closing connection: queued again
        alice.events.clear()
        alice.store.outbox.claim(message_id, "lan")
        alice.worker.submit(bob.user_id, message_id)
        if alice.finished(message_id).message.state != "queued":
            break
    assert alice.store.messages.get(message_id).state == "delivered"
    offsets = [int(found) for found in re.findall(r"starting at byte (\d+)", caplog.text)]
    # it resumed (more than once, when a retry met the connection the cancel was closing)
    assert offsets[0] == 0 and 0 < offsets[-1] < size and offsets == sorted(offsets), offsets
    bob.wait_for(lambda e: isinstance(e, MessageChanged) and e.message.file_id is not None
                 and bob.store.files.get(e.message.file_id).state == "complete")
    assert alice.store.lan_meter.totals(BOB) == MeterFigures(1, size)
    assert bob.store.lan_meter.totals(ALICE) == MeterFigures(1, size)


def test_a_text_that_arrives_twice_counts_once(pair, team_ca: TeamCA,
                                               tmp_path: Path) -> None:
    from tests.test_peer_link import Node

    alice, bob = pair
    first = alice.send_text(bob, "once")
    assert alice.finished(first).message.state == "delivered"
    # Alice's machine lost the ACK (a crash before it was recorded) and sends the same uid again:
    # a second profile of hers with the message written anew stands for the restarted sender.
    again = Node(tmp_path / "alice-again", ALICE, team_ca)
    try:
        again.store.dialogs.ensure(BOB, "user", "Bob")
        with again.store.transaction():
            repeat = again.store.messages.add_outgoing(
                BOB, "once", uid=alice.store.messages.get(first).uid)
            again.store.outbox.enqueue(repeat.id)
        again.store.outbox.claim(repeat.id, "lan")
        again.worker.learn_address(BOB, "127.0.0.1", bob.worker.port)
        again.worker.submit(BOB, repeat.id)
        assert again.finished(repeat.id).message.state == "delivered"
    finally:
        again.close()
    assert bob.store.messages.count(ALICE) == 1
    assert bob.store.lan_meter.totals() == MeterFigures(1, 4)  # the receiver counted it once
    assert alice.store.lan_meter.totals() == MeterFigures(1, 4)


# -- Telegram does not count ---------------------------------------------------------------------


def test_a_telegram_message_does_not_count(paths: ProfilePaths) -> None:
    from tests.telegram_emulator import TEST_API_HASH, TEST_API_ID, TelegramServer
    from tests.test_telegram_worker import ALICE_PHONE, BOB_PHONE, _events, _factory, _sign_in

    server = TelegramServer(seed=4)
    alice = server.add_user("Alice", phone=ALICE_PHONE)
    bob = server.add_user("Bob", phone=BOB_PHONE)
    server.send_as(bob, alice, "hi over the cloud")
    config = Config(telegram=TelegramSettings(api_id=TEST_API_ID, api_hash=TEST_API_HASH),
                    lan=LanSettings(enabled=False))
    app = build_app(paths, config, window=False, telegram_client_factory=_factory(server))
    app.start()
    try:
        _sign_in(app, server)
        app.telegram.wait_synced().result(30)
        message = app.router.send_text(bob.id, "and back over the cloud")
        [done] = _events(app, MessageChanged, where=lambda e: e.message.id == message.id
                         and e.message.state == "sent")
        assert done.message.transport == "telegram"
        assert app.store.messages.count(bob.id) == 2
        assert app.store.lan_meter.totals() == MeterFigures(0, 0)
        assert app.store.lan_meter.by_dialog() == []
    finally:
        app.shutdown()


# -- in the window -------------------------------------------------------------------------------


@pytest.mark.gui
def test_status_bar_shows_the_meter_and_a_click_opens_the_chart(app: App) -> None:
    label = app.window.lan_meter
    assert label.cget("text") == "Kept on LAN: 0 B · 0 msgs"
    app.store.dialogs.upsert(ALICE, "user", "Alice")
    message = _delivered_text(app.store, ALICE, "x" * 1500, "u1")
    app.store.lan_meter.count_delivery(message)
    app.events.post(MessageChanged(message))  # what the peer worker posts after the commit
    assert pump_until(app, lambda: label.cget("text") == "Kept on LAN: 1.5 KB · 1 msg")
    label.event_generate("<Button-1>")
    assert pump_until(app, lambda: label.chart is not None and label.chart.winfo_viewable())
    canvas = label.chart.canvas
    assert len(canvas.find_withtag("day-bar")) == 1
    assert len(canvas.find_withtag(f"dialog-{ALICE}")) == 1
    assert "1.5 KB" in canvas.itemcget(canvas.find_withtag("total")[0], "text")
    label.chart.event_generate("<Escape>")
    assert pump_until(app, lambda: not label.chart.winfo_exists())


# -- between network namespaces ------------------------------------------------------------------


@pytest.mark.netns
def test_the_meter_counts_a_known_lan_transfer_exactly_on_both_sides(tmp_path: Path) -> None:
    from tests.lan_nodes import AppNode
    from tests.netns import Network, require_netns

    require_netns()
    texts = ["olá Bob", "three texts of known length ✓", "x" * 5000]
    payload = tmp_path / "one-mebibyte.bin"
    payload.write_bytes(os.urandom(MIB))
    expected = MeterFigures(4, sum(len(t.encode()) for t in texts) + MIB)
    ca = TeamCA.create()
    with Network(("a", "b")) as network:
        alice = AppNode(network["a"], tmp_path / "a", "alice", ALICE, ca)
        bob = AppNode(network["b"], tmp_path / "b", "bob", BOB, ca)
        bob.start_headless()
        for text in texts:
            result = alice.send(BOB, text)
            assert result.returncode == 0, result.stderr
        result = alice.send(BOB, file=payload)
        assert result.returncode == 0, result.stderr
        assert "delivered over the LAN" in result.stdout
        assert bob.stop() == 0
    for node, peer in ((alice, BOB), (bob, ALICE)):
        store = Store.open(node.paths.database)
        try:
            assert store.lan_meter.totals(peer) == expected, node.name
            assert store.lan_meter.totals() == expected, node.name
            [row] = store.lan_meter.by_dialog()
            assert (row.dialog_id, row.figures) == (peer, expected)
            assert store.lan_meter.by_day(1)[0][1] == expected
        finally:
            store.close()
