"""Whether a new message deserves a desktop notification, and what it says (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

from chimera_tk.store.records import Dialog, Message

PREVIEW_CHARS = 120
ROUTE_LABELS = {"lan": "via LAN", "telegram": "via Telegram"}


@dataclass(frozen=True, slots=True)
class NotifyContext:
    """What the Tk thread knows when a message arrives."""

    outgoing: bool
    notifications_enabled: bool  # ui.notifications
    do_not_disturb: bool  # ui.do_not_disturb, also the tray's "Mute notifications"
    dialog_muted: bool
    window_focused: bool  # shown, not minimised, and holding the keyboard focus
    chat_open: bool  # this message's chat is the one open in the window


def should_notify(context: NotifyContext) -> bool:
    """Notify about others' messages, unless switched off, muted, or already in front of the
    reader (the window has the focus *and* shows that chat)."""
    if context.outgoing or not context.notifications_enabled:
        return False
    if context.do_not_disturb or context.dialog_muted:
        return False
    return not (context.window_focused and context.chat_open)


def notification_content(message: Message, dialog: Dialog | None, *, preview: bool,
                         count: int = 1) -> tuple[str, str]:
    """(title, body): the sender (and the group it was said in), the route, and a preview of
    the text when ``preview`` is on; without it the body only says that messages came.
    ``count`` > 1 folds a burst from one chat into one notification about its latest message."""
    sender = message.sender_name or (dialog.title if dialog is not None else "") \
        or f"User {message.sender_id or message.dialog_id}"
    title = sender
    if dialog is not None and dialog.kind != "user" and dialog.title and dialog.title != sender:
        title = f"{sender} in {dialog.title}"
    route = ROUTE_LABELS.get(message.transport or "", "")
    if route:
        title = f"{title} ({route})"
    if not preview:
        return title, "New message" if count == 1 else f"{count} new messages"
    text = " ".join(message.text.split())
    if not text:
        body = "Sent a file" if message.file_id is not None else "New message"
    elif len(text) > PREVIEW_CHARS:
        body = text[:PREVIEW_CHARS - 1].rstrip() + "…"
    else:
        body = text
    if count > 1:
        body = f"{body} (+{count - 1} more)"
    return title, body


def summary_content(messages: int, chats: int) -> tuple[str, str]:
    """One notification for the chats beyond the few that got their own in a burst."""
    return "Chimera", f"{messages} new messages in {chats} more chats"
