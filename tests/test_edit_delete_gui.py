"""The message context menu and editing in the composer, in the real window on Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chimera_tk.store import Store
from chimera_tk.store.records import IncomingMessage, utc_now_ms
from tests.conftest import pump_until

pytestmark = pytest.mark.gui

BOB = 2002
SCREENSHOTS = os.environ.get("CHIMERA_SCREENSHOT_DIR")


def _next_time(store: Store) -> int:
    """A moment after the chat's newest message, so that the chat's order is the test's."""
    newest = store.messages.latest_page(BOB, 1)
    return newest[-1].sent_at + 1000 if newest else utc_now_ms() - 3_600_000


def _sent(store: Store, text: str) -> int:
    with store.transaction():
        message = store.messages.add_outgoing(BOB, text, sent_at=_next_time(store))
        store.outbox.enqueue(message.id)
    store.outbox.claim(message.id, "lan")
    store.outbox.complete(message.id, delivered=True)
    return message.id


def _received(store: Store, text: str, uid: str, sent_at: int | None = None) -> int:
    message, _ = store.messages.receive(IncomingMessage(
        BOB, uid, BOB, "Bob", text, sent_at or _next_time(store), "lan"))
    return message.id


@pytest.fixture
def chat(app):
    """Bob's chat open: two of Bob's messages and two of ours, delivered over the LAN."""
    store = app.store
    store.dialogs.ensure(BOB, "user", "Bob")
    ids = {}
    ids["bob1"] = _received(store, "Are you coming to the review?", "bob-1")
    ids["mine1"] = _sent(store, "Yes, at 3")
    ids["bob2"] = _received(store, "Great, bring the slides", "bob-2")
    ids["mine2"] = _sent(store, "Will do")
    app.window.dialogs.refresh()
    app.window.dialogs.select(BOB)
    assert pump_until(app, lambda: app.window.chat.dialog_id == BOB)
    assert pump_until(app, lambda: "Will do" in app.window.chat.messages.visible_text())
    return ids


def _shown(app) -> str:
    text = app.window.chat.messages.text
    return text.tk.call(text._w, "get", "-displaychars", "1.0", "end-1c")


def _target(app, message_id: int) -> None:
    menu = app.message_menu
    menu.prepare(app.store.messages.get(message_id))


def _enabled(app, label: str) -> bool:
    return str(app.message_menu.menu.entrycget(label, "state")) == "normal"


def _right_click(app, message_id: int) -> None:
    """A real right click on the message's text; the menu that pops up is closed again."""
    text = app.window.chat.messages.text
    start = text.tag_ranges(f"msg{message_id}")[0]
    text.see(start)
    app.root.update()
    x, y, _w, h = text.bbox(f"{start} lineend -2c")
    text.event_generate("<Button-3>", x=x, y=y + h // 2, rootx=text.winfo_rootx() + x,
                        rooty=text.winfo_rooty() + y)
    app.root.update()
    _close_menu(app)


def _close_menu(app) -> None:
    """As Escape would: unpost the popped-up menu and release its grab."""
    menu = app.message_menu.menu
    app.root.tk.call("tk::MenuUnpost", menu._w)
    app.root.update()


def _press(widget, keysym: str) -> None:
    widget.focus_force()
    widget.update()
    widget.event_generate(f"<KeyPress-{keysym}>")
    widget.update()


def test_right_click_offers_edit_and_delete_for_own_messages_only(app, chat) -> None:
    _right_click(app, chat["mine2"])
    assert app.message_menu.target.id == chat["mine2"]
    assert _enabled(app, "Edit") and _enabled(app, "Delete…") and _enabled(app, "Copy")
    assert not _enabled(app, "Open file") and not _enabled(app, "Show in folder")
    _right_click(app, chat["bob2"])
    assert app.message_menu.target.id == chat["bob2"]
    assert not _enabled(app, "Edit") and _enabled(app, "Delete…")


def test_shift_f10_opens_the_menu_for_the_clicked_or_the_newest_message(app, chat) -> None:
    text = app.window.chat.messages.text
    app.root.focus_force()
    text.focus_set()  # Ctrl+Tab from the composer: the messages take the focus
    app.root.update()
    assert app.root.focus_get() is text
    text.event_generate("<Shift-F10>")
    app.root.update()
    _close_menu(app)
    assert app.message_menu.target.id == chat["mine2"]
    start = text.tag_ranges(f"msg{chat['bob1']}")[0]
    x, y, _w, h = text.bbox(f"{start} + 1 line")
    text.event_generate("<Button-1>", x=x + 2, y=y + h // 2)
    text.event_generate("<ButtonRelease-1>", x=x + 2, y=y + h // 2)
    app.root.update()
    assert app.root.focus_get() is text  # a click on a message focuses the messages
    text.event_generate("<KeyPress-Menu>")
    app.root.update()
    _close_menu(app)
    assert app.message_menu.target.id == chat["bob1"]


def test_typing_while_the_messages_have_the_focus_goes_into_the_composer(app, chat) -> None:
    text = app.window.chat.messages.text
    app.root.focus_force()
    text.focus_set()
    app.root.update()
    text.event_generate("<KeyPress-h>")
    text.event_generate("<KeyPress-i>")
    app.root.update()
    assert app.window.chat.composer.content() == "hi"
    assert app.root.focus_get() is app.window.chat.composer.text


def test_edit_from_the_menu_saves_with_enter_and_the_chat_says_edited(app, chat) -> None:
    composer = app.window.chat.composer
    composer.text.insert("1.0", "half-typed draft")
    _target(app, chat["mine1"])
    app.message_menu.menu.invoke("Edit")
    app.root.update()
    assert composer.content() == "Yes, at 3"
    assert app.message_menu._editing.banner.winfo_ismapped()
    assert "Editing — Esc to cancel" in app.message_menu._editing.banner_label.cget("text")
    assert str(composer.send_button.cget("text")) == "Save"
    _screenshot(app, "composer-editing")
    composer.text.delete("1.0", "end")
    composer.text.insert("1.0", "Yes, at 4")
    _press(composer.text, "Return")
    assert pump_until(app, lambda: "Yes, at 4" in _shown(app))
    assert "Yes, at 3" not in _shown(app)
    edited = app.store.messages.get(chat["mine1"])
    assert edited.text == "Yes, at 4" and edited.edited_at is not None
    assert pump_until(app, lambda: "edited" in _shown(app))
    assert pump_until(app, lambda: composer.content() == "half-typed draft")  # draft is back
    assert not app.message_menu._editing.banner.winfo_ismapped()
    assert app.store.changes.get(chat["mine1"]).kind == "edit"  # waits for Bob on the LAN


def test_up_in_an_empty_composer_edits_the_last_own_message_and_esc_cancels(
        app, chat) -> None:
    composer = app.window.chat.composer
    _press(composer.text, "Up")
    assert composer.content() == "Will do"
    assert app.message_menu._editing.message.id == chat["mine2"]
    _press(composer.text, "Escape")
    assert composer.content() == ""
    assert app.message_menu._editing.message is None
    assert app.store.messages.get(chat["mine2"]).edited_at is None
    composer.text.insert("1.0", "typing")
    _press(composer.text, "Up")  # with text in the box, Up just moves the cursor
    assert app.message_menu._editing.message is None and composer.content() == "typing"


def test_delete_for_everyone_asks_then_the_message_leaves_the_chat(app, chat) -> None:
    _target(app, chat["mine2"])
    app.message_menu.menu.invoke("Delete…")
    dialog = app.message_menu.confirm
    assert pump_until(app, lambda: dialog.winfo_ismapped())
    assert dialog.everyone_button is not None
    _screenshot(app, "delete-dialog")
    dialog.everyone_button.invoke()
    assert pump_until(app, lambda: "Will do" not in _shown(app))
    assert "This message was deleted." not in _shown(app)
    stored = app.store.messages.get(chat["mine2"])
    assert stored.deleted and stored.deleted_here
    assert app.store.changes.get(chat["mine2"]).kind == "delete"


def test_someone_elses_message_is_deleted_for_me_only(app, chat) -> None:
    _target(app, chat["bob1"])
    app.message_menu.menu.invoke("Delete…")
    dialog = app.message_menu.confirm
    assert dialog.everyone_button is None  # only "Delete for me" and "Cancel"
    dialog.me_button.invoke()
    assert pump_until(app, lambda: "review" not in _shown(app))
    assert app.store.messages.get(chat["bob1"]).deleted_here
    assert app.store.changes.pending() == []


def test_cancel_keeps_the_message(app, chat) -> None:
    _target(app, chat["mine1"])
    app.message_menu.menu.invoke("Delete…")
    app.message_menu.confirm.cancel_button.invoke()
    app.root.update()
    assert not app.store.messages.get(chat["mine1"]).deleted
    assert "Yes, at 3" in _shown(app)


def test_copy_puts_the_message_text_on_the_clipboard(app, chat) -> None:
    _target(app, chat["bob2"])
    app.message_menu.menu.invoke("Copy")
    assert app.root.clipboard_get() == "Great, bring the slides"


def test_open_file_and_show_in_folder_are_offered_for_a_file_on_disk(
        app, chat, tmp_path: Path) -> None:
    document = tmp_path / "slides.txt"
    document.write_text("slides")
    store = app.store
    file = store.files.create("slides.txt", 6, path=str(document), state="complete")
    message, _ = store.messages.receive(IncomingMessage(
        BOB, "bob-file", BOB, "Bob", "", _next_time(store), "lan", file_id=file.id))
    _target(app, message.id)
    assert _enabled(app, "Open file") and _enabled(app, "Show in folder")
    assert not _enabled(app, "Edit")


def test_screenshot_of_a_chat_with_an_edited_and_a_deleted_message(app, chat) -> None:
    """Not a check of pixels: the screenshot is for people (CHIMERA_SCREENSHOT_DIR)."""
    view = app.window.chat.messages
    view.received_deletes = "mark"  # as with ui.received_deletes = "mark"
    app.editor.edit(chat["mine1"], "Yes, at 4 (room 2)")
    app.store.messages.mark_deleted(chat["bob2"])  # as a received delete would
    view.open(app.store.dialogs.get(BOB))
    assert pump_until(app, lambda: "This message was deleted." in _shown(app))
    assert "edited" in _shown(app)
    if SCREENSHOTS:
        _right_click(app, chat["mine1"])
        text = view.text
        start = text.tag_ranges(f"msg{chat['mine1']}")[0]
        x, y, _w, _h = text.bbox(start)
        app.message_menu.prepare(app.store.messages.get(chat["mine1"]))
        app.message_menu.menu.post(text.winfo_rootx() + x + 200, text.winfo_rooty() + y + 30)
        _screenshot(app, "chat-edited-deleted-menu")
        app.message_menu.menu.unpost()


def _screenshot(app, name: str) -> None:
    if SCREENSHOTS and shutil.which("import"):
        for _ in range(5):
            app.root.update()
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-window", "root", str(Path(SCREENSHOTS) / f"{name}.png")],
                       check=False, timeout=30)


def test_switching_received_deletes_in_settings_redraws_the_open_chat(app, chat) -> None:
    import dataclasses

    app.store.messages.mark_deleted(chat["bob2"])  # Bob deleted it (a received delete)
    app.window.chat.messages.open(app.store.dialogs.get(BOB))
    app.root.update()
    assert "This message was deleted." not in _shown(app)  # default: removed
    marked = dataclasses.replace(app.config.ui, received_deletes="mark")
    app.apply_config(dataclasses.replace(app.config, ui=marked))
    assert pump_until(app, lambda: "This message was deleted." in _shown(app))
    removed = dataclasses.replace(app.config.ui, received_deletes="remove")
    app.apply_config(dataclasses.replace(app.config, ui=removed))
    assert pump_until(app, lambda: "This message was deleted." not in _shown(app))
    assert "Will do" in _shown(app)
