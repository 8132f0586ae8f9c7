"""The real main window on an X display (Xvfb in CI): composer, chat view, dialog switching."""

import threading

import pytest

from chimera_tk.events import MessageStored
from chimera_tk.store import Store
from chimera_tk.store.records import IncomingMessage
from chimera_tk.views.message_view import PAGE_SIZE
from tests.conftest import pump_until

pytestmark = pytest.mark.gui


def _seed(app, dialogs=((1, "Ana"), (2, "Bruno"))) -> None:
    for dialog_id, title in dialogs:
        app.store.dialogs.upsert(dialog_id, "user", title)
        app.store.messages.receive(IncomingMessage(
            dialog_id, f"hello-{dialog_id}", dialog_id, title, f"first words from {title}",
            1_700_000_000_000 + dialog_id, "lan"))
    app.window.dialogs.refresh()


def _open(app, dialog_id: int) -> None:
    tree = app.window.dialogs.tree
    tree.selection_set(str(dialog_id))
    assert pump_until(app, lambda: app.window.chat.dialog_id == dialog_id)


def test_dialog_list_shows_titles_and_unread_badges(app) -> None:
    _seed(app)
    rows = app.window.dialogs.rows()
    assert {(title, badge) for _, title, badge in rows} == {("Ana", "1"), ("Bruno", "1")}


def test_enter_sends_and_the_message_appears_queued(app) -> None:
    _seed(app)
    _open(app, 1)
    composer = app.window.chat.composer
    composer.text.focus_force()
    composer.text.insert("1.0", "see you at the 3rd floor")
    composer.text.event_generate("<Return>")
    assert pump_until(app, lambda: "see you at the 3rd floor"
                      in app.window.chat.messages.visible_text())
    assert composer.content() == ""
    stored = app.store.messages.latest_page(1, 1)[0]
    assert (stored.text, stored.state, stored.outgoing) == ("see you at the 3rd floor",
                                                            "queued", True)
    assert [e.message_id for e in app.store.outbox.due()] == [stored.id]
    assert "queued" in app.window.chat.messages.visible_text()


def test_shift_enter_starts_a_new_line_without_sending(app) -> None:
    _seed(app)
    _open(app, 1)
    text = app.window.chat.composer.text
    text.focus_force()
    text.insert("end", "line one")
    text.event_generate("<Shift-Return>")
    text.insert("end", "line two")
    app.root.update()
    assert app.window.chat.composer.content() == "line one\nline two"
    assert app.store.messages.count(1) == 1  # only the seeded message
    app.window.chat.composer.send_button.invoke()
    assert app.store.messages.latest_page(1, 1)[0].text == "line one\nline two"


def test_empty_composer_sends_nothing(app) -> None:
    _seed(app)
    _open(app, 1)
    app.window.chat.composer.text.insert("1.0", "   \n  ")
    app.window.chat.composer.send_button.invoke()
    assert app.store.messages.count(1) == 1


def test_switching_dialogs_shows_each_chat_and_clears_its_badge(app) -> None:
    _seed(app)
    _open(app, 1)
    assert app.window.chat.title.cget("text") == "Ana"
    assert "first words from Ana" in app.window.chat.messages.visible_text()
    _open(app, 2)
    assert app.window.chat.title.cget("text") == "Bruno"
    shown = app.window.chat.messages.visible_text()
    assert "first words from Bruno" in shown and "Ana" not in shown
    assert pump_until(app, lambda: all(b == "" for _, _, b in app.window.dialogs.rows()))


def test_dialog_search_box_filters_the_list(app) -> None:
    _seed(app, dialogs=((1, "Ana"), (2, "Bruno"), (3, "Anabela")))
    app.window.dialogs.search_var.set("ana")
    assert pump_until(app, lambda: [t for _, t, _ in app.window.dialogs.rows()]
                      in (["Anabela", "Ana"], ["Ana", "Anabela"]))
    app.window.dialogs.search_var.set("zzz")
    assert pump_until(app, lambda: app.window.dialogs.rows() == [])


def test_hundred_thousand_messages_open_at_the_newest_page_and_load_older(app) -> None:
    app.store.dialogs.upsert(9, "user", "Archive")
    app.store.messages.receive_many(
        IncomingMessage(9, f"m{i}", 9, "Archive", f"message {i}", 1_600_000_000_000 + i * 1000,
                        "lan") for i in range(100_000))
    app.window.dialogs.refresh()
    _open(app, 9)
    view = app.window.chat.messages
    assert len(view.loaded) == PAGE_SIZE
    assert view.loaded[-1].text == "message 99999"
    assert view.showing_newest()  # the newest message is on screen
    view.text.yview_moveto(0.0)
    assert pump_until(app, lambda: len(view.loaded) == 2 * PAGE_SIZE)
    assert view.loaded[0].text == f"message {100_000 - 2 * PAGE_SIZE}"
    assert view.text.yview()[0] > 0.0  # the reader stays where they were, not at the new top
    texts = [m.text for m in view.loaded]
    assert texts == [f"message {i}" for i in range(100_000 - 2 * PAGE_SIZE, 100_000)]


def test_message_from_a_worker_thread_appears_in_the_open_chat(app, paths) -> None:
    _seed(app)
    _open(app, 1)

    def worker() -> None:
        own = Store.open(paths.database)  # each thread its own connection
        message, _ = own.messages.receive(IncomingMessage(
            1, "from-worker", 1, "Ana", "arrived while you were typing", 1_800_000_000_000,
            "lan"))
        own.close()
        app.events.post(MessageStored(message))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert pump_until(app, lambda: "arrived while you were typing"
                      in app.window.chat.messages.visible_text())


def test_window_close_button_shuts_down_in_order(app) -> None:
    close_command = app.root.protocol("WM_DELETE_WINDOW")  # what the close button runs
    app.root.tk.call(close_command)
    assert not app._running
    app.shutdown()
    assert app.store is None and app.root is None
    assert threading.active_count() == 1, [t.name for t in threading.enumerate()]


def test_a_burst_of_incoming_messages_is_drawn_in_batches_and_stays_bounded(app) -> None:
    from chimera_tk.views.message_view import MAX_LOADED

    _seed(app)
    _open(app, 1)
    view = app.window.chat.messages
    stored = []
    for i in range(2000):
        message, _ = app.store.messages.receive(IncomingMessage(
            1, f"burst-{i}", 1, "Ana", f"burst message {i}", 1_800_000_000_000 + i, "lan"))
        stored.append(message)
    for message in stored:
        app.events.post(MessageStored(message))
    assert pump_until(app, lambda: view.loaded and view.loaded[-1].uid == "burst-1999",
                      timeout=30)
    assert len(view.loaded) <= MAX_LOADED
    uids = [m.uid for m in view.loaded]
    assert uids == [f"burst-{i}" for i in range(2000 - len(uids), 2000)]  # newest, in order
    assert view.showing_newest()
    assert view.has_older  # trimmed messages come back by scrolling up
    assert pump_until(app, lambda: app.store.dialogs.get(1).unread_count == 0)
    view.text.yview_moveto(0.0)
    assert pump_until(app, lambda: view.loaded[0].uid == f"burst-{2000 - len(uids) - 50}")


def test_state_changes_that_overtake_the_first_drawing_still_show(app) -> None:
    from chimera_tk.events import MessageChanged

    _seed(app)
    _open(app, 1)
    message = app.router.send_text(1, "fast LAN")  # posts MessageStored (queued)
    app.store.outbox.claim(message.id, "lan")
    app.store.outbox.complete(message.id, delivered=True)
    app.events.post(MessageChanged(app.store.messages.get(message.id)))  # same pump tick
    view = app.window.chat.messages
    assert pump_until(app, lambda: view.loaded and view.loaded[-1].id == message.id)
    assert view.loaded[-1].state == "delivered"
    assert "delivered ✓✓ · via LAN" in view.visible_text()


def test_an_open_chat_never_keeps_an_unread_badge(app) -> None:
    from chimera_tk.events import DialogChanged

    _seed(app)
    _open(app, 1)
    # a sync stores a message without announcing it, then reports the dialog as changed
    app.store.messages.receive(IncomingMessage(1, "synced", 1, "Ana", "from the sync",
                                               1_900_000_000_000, "telegram", tg_msg_id=7))
    app.events.post(DialogChanged(app.store.dialogs.get(1)))
    assert pump_until(app, lambda: app.store.dialogs.get(1).unread_count == 0)
    assert pump_until(app, lambda: dict((i, b) for i, _, b in app.window.dialogs.rows())[1] == "")


def test_status_texts_are_shortened_to_fit_and_keep_their_whole_text() -> None:
    from chimera_tk.views.status_bar import fit_texts

    texts = {"a": "x" * 40, "b": "y" * 10, "c": "z" * 30}
    fitted = fit_texts(texts, 60, len)  # one "pixel" per character
    assert sum(len(t) for t in fitted.values()) <= 60
    assert fitted["b"] == "y" * 10  # short texts are left alone
    assert fitted["a"].endswith("…") and fitted["c"].endswith("…")
    assert fit_texts(texts, 1000, len) == texts
    tiny = fit_texts(texts, 0, len, shortest=14)
    assert all(len(t) <= 14 or t == texts[k] for k, t in tiny.items())


@pytest.mark.gui
def test_a_long_status_never_pushes_the_meter_or_settings_out(app) -> None:
    from chimera_tk.events import StatusChanged

    long_text = "Certificate: renewal failing — expires 27 Nov 12:24 " + "and more " * 20
    app.events.post(StatusChanged("certificate", long_text, "warning"))
    bar = app.window.status_bar
    assert pump_until(app, lambda: bar.text("certificate") == long_text)
    app.root.update()
    shown = bar.labels["certificate"].cget("text")
    assert shown.endswith("…") and len(shown) < len(long_text)
    meter = app.window.lan_meter
    assert pump_until(app, lambda: meter.winfo_width() >= meter.winfo_reqwidth())
    label_right = bar.labels["certificate"].winfo_x() + bar.labels["certificate"].winfo_width()
    assert label_right <= meter.winfo_x()
