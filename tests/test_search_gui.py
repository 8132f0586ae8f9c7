"""Search on the real window (Xvfb) over a real SQLite profile: the global search panel, Ctrl+F in
a chat, opening a chat at a message, and Esc closing every panel."""

from __future__ import annotations

import pytest

from chimera_tk.events import MessageStored
from chimera_tk.store import Store
from chimera_tk.store.messages import new_lan_uid, telegram_uid
from chimera_tk.store.records import IncomingMessage, Message
from chimera_tk.views.highlight import match_spans, snippet
from chimera_tk.views.message_view import MAX_LOADED, PAGE_SIZE
from tests.conftest import pump_until

LAN_PERSON = 7_001_234  # a person met on the LAN: their dialog id is their Telegram user id
GROUP = -4_005_006  # a Telegram basic group, as Telethon marks it
T0 = 1_700_000_000_000
HOSTILE = ['"', '""', "*", "NEAR", "NEAR(a b)", "a NEAR/2 b", "-", "-quokka", "(", ")", "((a",
           "a OR", "AND", "NOT x", "^", "text:quokka", "chat:c1", "{text}: a", "'", "\\", "\x00",
           "quo*ka", '"unbalanced', "+", ":", "😀", "a" * 500]


def _lan_chat(store: Store, count: int, special: dict[int, str]) -> dict[int, Message]:
    """A LAN conversation stored as the peer worker stores it (uuid uid, transport lan)."""
    store.dialogs.ensure(LAN_PERSON, "user", "Ana Lopes")
    kept = {}
    for i in range(count):
        message, _ = store.messages.receive(IncomingMessage(
            dialog_id=LAN_PERSON, uid=new_lan_uid(), sender_id=LAN_PERSON,
            sender_name="Ana Lopes", text=special.get(i, f"lan filler {i}"),
            sent_at=T0 + i * 60_000, transport="lan"))
        if i in special:
            kept[i] = message
    return kept


def _telegram_chat(store: Store, count: int, special: dict[int, str]) -> dict[int, Message]:
    """A Telegram group stored as the Telegram worker maps it (tg uid, message id, telegram)."""
    store.dialogs.upsert(GROUP, "group", "Climbing club")
    store.messages.receive_many(IncomingMessage(
        dialog_id=GROUP, uid=telegram_uid(GROUP, 100 + i), sender_id=900 + i % 3,
        sender_name=("Bea", "Caio", "Dora")[i % 3], text=special.get(i, f"club filler {i}"),
        sent_at=T0 + 30_000 + i * 60_000, transport="telegram", tg_msg_id=100 + i)
        for i in range(count))
    return {i: store.messages.find_by_telegram_id(GROUP, 100 + i) for i in special}


def _key(app, widget, sequence: str) -> None:
    widget.focus_force()
    app.root.update()
    widget.event_generate(sequence)
    app.root.update()


def _on_screen(view, message_id: int) -> bool:
    ranges = view.text.tag_ranges(f"msg{message_id}")
    return bool(ranges) and view.text.dlineinfo(ranges[0]) is not None


def _marked(view) -> list[str]:
    ranges = view.text.tag_ranges("match")
    return [view.text.get(ranges[i], ranges[i + 1]) for i in range(0, len(ranges), 2)]


def _open_result(app, route: str) -> None:
    """Ctrl+Shift+F, type, move to the result with that route, Enter."""
    _key(app, app.window.chat.composer.text, "<Control-Shift-F>")
    panel = app.window.search_panel
    assert panel is not None and panel.winfo_exists()
    panel.query.set("quokka")
    assert pump_until(app, lambda: len(panel.results) == 2)
    for _ in range([r.route for r in panel.results].index(route)):
        _key(app, panel.entry, "<Down>")
    assert panel.selected_result().route == route
    _key(app, panel.entry, "<Return>")
    assert not panel.winfo_exists()


@pytest.mark.gui
def test_search_finds_a_lan_and_a_telegram_message_and_opens_each_chat_at_it(app) -> None:
    lan = _lan_chat(app.store, 400, {30: "📷👍🏽 the quokka photos are on the share"})[30]
    tg = _telegram_chat(app.store, 400, {55: "Quokka meetup moved to Friday"})[55]
    app.window.dialogs.refresh()
    view = app.window.chat.messages

    _open_result(app, "LAN")
    assert pump_until(app, lambda: app.window.chat.dialog_id == LAN_PERSON)
    assert app.window.chat.title.cget("text") == "Ana Lopes"
    assert view.highlighted == lan.id
    assert "📷👍🏽 the quokka photos are on the share" in view.visible_text()
    assert pump_until(app, lambda: _on_screen(view, lan.id))
    assert _marked(view) == ["quokka"]  # emoji before it do not shift the mark
    assert view.has_newer  # 370 newer messages are not loaded yet
    assert app.window.dialogs.tree.selection() == (str(LAN_PERSON),)

    _open_result(app, "Telegram")
    assert pump_until(app, lambda: app.window.chat.dialog_id == GROUP)
    assert view.highlighted == tg.id
    assert "Quokka meetup moved to Friday" in view.visible_text()
    assert "lan filler" not in view.visible_text()
    assert pump_until(app, lambda: _on_screen(view, tg.id))
    assert _marked(view) == ["Quokka"]
    app.root.update()  # the list catching up with the selection must not reopen at the newest
    assert view.highlighted == tg.id and _on_screen(view, tg.id)


@pytest.mark.gui
def test_results_show_chat_sender_route_and_highlighted_words(app) -> None:
    _lan_chat(app.store, 3, {1: "bring the quokka plush"})
    _telegram_chat(app.store, 3, {2: "no quokkas allowed"})
    app.window.open_search("quokka")
    panel = app.window.search_panel
    app.root.update()
    described = {(r.dialog_title, r.sender, r.route) for r in panel.results}
    assert described == {("Ana Lopes", "Ana Lopes", "LAN"), ("Climbing club", "Dora", "Telegram")}
    marked = panel.list.tag_ranges("match")
    words = {panel.list.get(marked[i], marked[i + 1]) for i in range(0, len(marked), 2)}
    assert words == {"quokka", "quokkas"}
    shown = panel.list.get("1.0", "end")
    assert "via LAN" in shown and "via Telegram" in shown


@pytest.mark.gui
def test_hostile_queries_never_raise_in_the_panel_or_the_find_bar(app) -> None:
    _lan_chat(app.store, 5, {2: "NEAR the (quokka) - said \"hi\" *"})
    app.window.dialogs.refresh()
    app.window.open_search()
    panel = app.window.search_panel
    for query in HOSTILE:
        panel.query.set(query)
        panel.search()  # raises if anything goes wrong
        assert panel.status.cget("text") != "Search failed; try other words."
    panel.query.set('"quokka')
    assert panel.search() == 1  # the quote is just a character to strip, the word still found
    panel.destroy()
    app.window.open_dialog(LAN_PERSON)
    app.window.chat.show_find()
    bar = app.window.chat.find_bar
    for query in HOSTILE:
        bar.query.set(query)
        bar.search()
        assert bar.count.cget("text") != "Search failed"
    bar.query.set("NEAR")
    assert bar.search() == 1


def test_hostile_queries_are_plain_words_to_the_store(store) -> None:
    _lan_chat(store, 3, {1: "NEAR the (quokka)"})
    for query in HOSTILE:
        store.messages.search(query)
        store.messages.search_positions(query, LAN_PERSON)
        snippet("NEAR the (quokka)", query)
    assert [m.text for m in store.messages.search("(quokka")] == ["NEAR the (quokka)"]


def test_around_returns_a_window_of_the_chat_in_order(store) -> None:
    _lan_chat(store, 300, {})
    middle = store.messages.latest_page(LAN_PERSON, 300)[120]
    older, found, newer = store.messages.around(LAN_PERSON, middle.id, 50, 50)
    assert found == middle
    assert [m.text for m in older] == [f"lan filler {i}" for i in range(70, 120)]
    assert [m.text for m in newer] == [f"lan filler {i}" for i in range(121, 171)]
    assert store.messages.around(LAN_PERSON + 1, middle.id) is None  # not that chat's message


def test_highlight_spans_follow_the_index_rules() -> None:
    text = "Café meeting; the CAFE-bar, cafés and cafeteria"
    assert [text[a:b] for a, b in match_spans(text, "cafe")] == ["Café", "CAFE", "cafés",
                                                                  "cafeteria"]
    assert [text[a:b] for a, b in match_spans(text, "cafe meet")] == ["Café", "meeting",
                                                                       "CAFE"]
    pieces = snippet("word " * 60 + "target " + "tail " * 60, "targ", width=40)
    assert pieces[0] == ("…", False) and pieces[-1] == ("…", False)
    assert ("target", True) in pieces


@pytest.mark.gui
def test_ctrl_f_steps_through_hits_outside_the_loaded_window(app) -> None:
    hits = {150: "zebra crossing", 2500: "a zebra in the office", 4990: "zebra again"}
    app.store.dialogs.ensure(LAN_PERSON, "user", "Ana Lopes")
    app.store.messages.receive_many(IncomingMessage(
        LAN_PERSON, f"m{i}", LAN_PERSON, "Ana Lopes", hits.get(i, f"message {i}"),
        T0 + i * 1000, "lan") for i in range(5000))
    ids = {i: m.id for i in hits for m in [app.store.messages.find_by_uid(f"m{i}")]}
    app.window.dialogs.refresh()
    app.window.dialogs.tree.selection_set(str(LAN_PERSON))
    assert pump_until(app, lambda: app.window.chat.dialog_id == LAN_PERSON)
    chat, view = app.window.chat, app.window.chat.messages
    assert ids[2500] not in {m.id for m in view.loaded}

    _key(app, chat.composer.text, "<Control-f>")
    bar = chat.find_bar
    assert chat.find_visible() and bar.focus_get() == bar.entry
    bar.entry.insert(0, "zeb")
    assert pump_until(app, lambda: bar.count.cget("text") == "1 of 3")
    assert view.highlighted == ids[4990]

    _key(app, bar.entry, "<Return>")  # next hit up the chat: outside the loaded window
    assert bar.count.cget("text") == "2 of 3"
    assert view.highlighted == ids[2500]
    assert "a zebra in the office" in view.visible_text()
    assert pump_until(app, lambda: _on_screen(view, ids[2500]))
    assert _marked(view) == ["zebra"]
    assert len(view.loaded) <= 2 * PAGE_SIZE + 1

    _key(app, bar.entry, "<F3>")
    assert bar.count.cget("text") == "3 of 3" and view.highlighted == ids[150]
    _key(app, bar.entry, "<Shift-Return>")
    assert bar.count.cget("text") == "2 of 3" and view.highlighted == ids[2500]
    _key(app, chat.composer.text, "<Shift-F3>")  # F3 works from anywhere in the window
    assert bar.count.cget("text") == "1 of 3" and view.highlighted == ids[4990]
    _key(app, chat.composer.text, "<F3>")
    assert bar.count.cget("text") == "2 of 3" and view.highlighted == ids[2500]


@pytest.mark.gui
def test_after_a_jump_scrolling_down_pages_newer_up_to_the_tail_then_follows(app) -> None:
    app.store.dialogs.ensure(LAN_PERSON, "user", "Ana Lopes")
    app.store.messages.receive_many(IncomingMessage(
        LAN_PERSON, f"m{i}", LAN_PERSON, "Ana Lopes", f"message {i}", T0 + i * 1000, "lan")
        for i in range(1500))
    target = app.store.messages.find_by_uid("m200")
    app.window.open_message(LAN_PERSON, target.id, "message")
    view = app.window.chat.messages
    assert view.has_newer and not view.following
    late, _ = app.store.messages.receive(IncomingMessage(
        LAN_PERSON, "late", LAN_PERSON, "Ana Lopes", "arrived while reading old messages",
        T0 + 5_000_000, "lan"))
    app.events.post(MessageStored(late))
    app.root.update()
    texts = [m.text for m in view.loaded]
    assert "arrived while reading old messages" not in texts  # no hole before it
    assert texts == [f"message {i}" for i in range(150, 150 + len(texts))]
    for _ in range(60):  # 26 pages lie between the jump and the tail
        if not view.has_newer:
            break
        last = view.loaded[-1].id
        view.text.yview_moveto(1.0)
        assert pump_until(app, lambda last=last: view.loaded[-1].id != last or not view.has_newer)
    assert not view.has_newer
    assert view.loaded[-1].uid == "late"
    assert len(view.loaded) <= MAX_LOADED
    texts = [m.text for m in view.loaded]
    assert texts[:-1] == [f"message {i}" for i in range(1500 - len(texts) + 1, 1500)]
    _key(app, view.text, "<Control-End>")  # the reader's own scroll: following again
    assert pump_until(app, lambda: view.following)
    newest, _ = app.store.messages.receive(IncomingMessage(
        LAN_PERSON, "newest", LAN_PERSON, "Ana Lopes", "now drawn at the tail", T0 + 6_000_000,
        "lan"))
    app.events.post(MessageStored(newest))
    assert pump_until(app, lambda: view.loaded[-1].uid == "newest")


@pytest.mark.gui
def test_escape_closes_each_panel(app) -> None:
    _lan_chat(app.store, 3, {1: "hello there"})
    app.window.dialogs.refresh()
    app.window.open_dialog(LAN_PERSON)
    chat = app.window.chat

    _key(app, chat.composer.text, "<Control-f>")
    assert chat.find_visible()
    _key(app, chat.find_bar.entry, "<Escape>")
    assert not chat.find_visible()
    assert chat.focus_get() == chat.composer.text

    chat.show_find()
    _key(app, chat.composer.text, "<Escape>")  # Esc anywhere in the window closes it too
    assert not chat.find_visible()

    _key(app, chat.composer.text, "<Control-Shift-F>")
    panel = app.window.search_panel
    assert panel.winfo_exists()
    _key(app, panel.entry, "<Escape>")
    assert not panel.winfo_exists()

    _key(app, chat.composer.text, "<Control-k>")
    switch = app.window.quick_switch
    assert switch.winfo_exists()
    _key(app, switch.entry, "<Escape>")
    assert not switch.winfo_exists()

    _key(app, chat.composer.text, "<Control-n>")
    new_chat = app.window.new_chat_dialog
    assert new_chat.winfo_exists()
    _key(app, new_chat.phone, "<Escape>")
    assert not new_chat.winfo_exists()


@pytest.mark.gui
def test_paging_up_after_a_jump_stays_bounded_and_ctrl_end_returns_to_the_tail(app) -> None:
    app.store.dialogs.ensure(LAN_PERSON, "user", "Ana Lopes")
    app.store.messages.receive_many(IncomingMessage(
        LAN_PERSON, f"m{i}", LAN_PERSON, "Ana Lopes", f"message {i}", T0 + i * 1000, "lan")
        for i in range(3000))
    app.window.open_message(LAN_PERSON, app.store.messages.find_by_uid("m2000").id)
    view = app.window.chat.messages
    app.root.update()
    for _ in range(16):  # 800 older messages, more than the widget keeps
        first = view.loaded[0].id
        view.text.yview_moveto(0.0)
        assert pump_until(app, lambda first=first: view.loaded[0].id != first)
    assert view.loaded[0].text == "message 1150"
    assert len(view.loaded) <= MAX_LOADED and view.has_newer
    texts = [m.text for m in view.loaded]
    assert texts == [f"message {i}" for i in range(1150, 1150 + len(texts))]  # no holes
    _key(app, view.text, "<Control-End>")
    assert view.loaded[-1].text == "message 2999" and not view.has_newer
    assert pump_until(app, lambda: view.following and view.showing_newest())


@pytest.mark.gui
def test_ctrl_f_with_caps_lock_on_finds_in_the_chat_not_everywhere(app) -> None:
    _lan_chat(app.store, 3, {1: "hello there"})
    app.window.open_dialog(LAN_PERSON)
    composer = app.window.chat.composer.text
    composer.focus_force()
    app.root.update()
    composer.event_generate("<KeyPress>", keysym="F", state=0x4 | 0x2)  # Control + Lock
    app.root.update()
    assert app.window.chat.find_visible()
    assert app.window.search_panel is None
