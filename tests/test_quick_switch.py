"""Ctrl+K quick switcher: ranking as plain logic, and the real popup on the real window."""

from __future__ import annotations

import pytest

from chimera_tk.store.records import Dialog, IncomingMessage
from chimera_tk.views.quick_switch import rank_dialogs
from tests.conftest import pump_until


def _dialog(dialog_id: int, title: str, **fields: object) -> Dialog:
    return Dialog(id=dialog_id, kind="user", title=title, **fields)


def test_word_starts_come_first_then_substrings_then_letters_in_order() -> None:
    recent_first = [_dialog(1, "Carla Banana"), _dialog(2, "Bruno"), _dialog(3, "Anabela"),
                    _dialog(4, "Ana"), _dialog(5, "Ivan Abel"), _dialog(6, "Zé", username="anna")]
    # "Ivan Abel" has a, n, a in order, but not within one word: too loose to be meant
    assert [d.title for d in rank_dialogs(recent_first, "ana")] == [
        "Anabela", "Ana", "Carla Banana", "Zé"]  # Zé by the username "anna"
    assert [d.title for d in rank_dialogs(recent_first, "anbl")] == ["Anabela"]
    assert [d.title for d in rank_dialogs(recent_first, "ANN")] == ["Zé", "Carla Banana"]
    assert [d.title for d in rank_dialogs(recent_first, "  ")] == [d.title for d in recent_first]
    assert rank_dialogs(recent_first, "xyz") == []


def test_accents_and_case_do_not_matter() -> None:
    dialogs = [_dialog(1, "José Antônio"), _dialog(2, "Jo")]
    assert [d.id for d in rank_dialogs(dialogs, "jose anto")] == [1]
    assert [d.id for d in rank_dialogs(dialogs, "ANTONIO")] == [1]


def _seed(app) -> None:
    for dialog_id, title, unread in ((1, "Ana", 0), (2, "Bruno", 2), (3, "Anabela", 1),
                                     (4, "Carla Banana", 0)):
        app.store.dialogs.upsert(dialog_id, "user", title, last_activity=dialog_id * 1000)
        for i in range(unread):
            app.store.messages.receive(IncomingMessage(
                dialog_id, f"u{dialog_id}-{i}", dialog_id, title, f"hi {i}",
                i, "lan"))  # older than the dialogs' activity: the order stays by id
    app.window.dialogs.refresh()


def _key(app, widget, sequence: str) -> None:
    widget.focus_force()
    app.root.update()
    widget.event_generate(sequence)
    app.root.update()


@pytest.mark.gui
def test_ctrl_k_filters_dialogs_and_enter_opens_the_chosen_one(app) -> None:
    _seed(app)
    app.window.open_dialog(2)
    composer = app.window.chat.composer.text
    composer.insert("1.0", "a draft that must survive")
    composer.mark_set("insert", "1.2")
    _key(app, composer, "<Control-k>")
    assert app.window.chat.composer.content() == "a draft that must survive"
    switch = app.window.quick_switch
    assert switch is not None and switch.winfo_exists()
    assert switch.focus_get() == switch.entry
    assert switch.rows() == ["Carla Banana", "Anabela", "Bruno", "Ana"]  # most recent first
    assert switch.tree.set("3", "unread") == "1"  # unread shown

    switch.entry.insert(0, "ana")
    app.root.update()
    assert switch.rows() == ["Anabela", "Ana", "Carla Banana"]
    assert switch.selected_id() == 3
    _key(app, switch.entry, "<Down>")
    assert switch.selected_id() == 1
    _key(app, switch.entry, "<Return>")
    assert not switch.winfo_exists()
    assert pump_until(app, lambda: app.window.chat.dialog_id == 1)
    assert app.window.chat.title.cget("text") == "Ana"


@pytest.mark.gui
def test_quick_switch_with_no_match_says_so_and_enter_does_nothing(app) -> None:
    _seed(app)
    app.window.open_quick_switch()
    switch = app.window.quick_switch
    switch.entry.insert(0, "zzz")
    app.root.update()
    assert switch.rows() == [] and switch.empty.winfo_manager() == "pack"
    _key(app, switch.entry, "<Return>")
    assert switch.winfo_exists() and app.window.chat.dialog_id is None
