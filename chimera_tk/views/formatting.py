"""How messages and dialogs are labelled: plain functions the views call and tests check."""

from __future__ import annotations

from datetime import datetime, timedelta

from chimera_tk.store.records import Dialog, FileRecord, Message

DISPLAY_LIMIT_CHARS = 20_000

_STATE_LABELS = {
    "queued": "queued",
    "sending": "sending…",
    "sent": "sent ✓",
    "delivered": "delivered ✓✓",
    "failed": "not sent!",
    "received": "",
}
_ROUTE_LABELS = {"lan": "via LAN", "telegram": "via Telegram"}


def local_time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000).astimezone()


def time_label(ms: int) -> str:
    return local_time(ms).strftime("%H:%M")


def day_label(ms: int, today: datetime | None = None) -> str:
    day = local_time(ms).date()
    today_date = (today or datetime.now().astimezone()).date()
    if day == today_date:
        return "Today"
    if day == today_date - timedelta(days=1):
        return "Yesterday"
    if day.year == today_date.year:
        return day.strftime("%d %B").lstrip("0")
    return day.strftime("%d %B %Y").lstrip("0")


def sender_label(message: Message, dialog: Dialog | None) -> str:
    if message.outgoing:
        return "You"
    if message.sender_name:
        return message.sender_name
    if dialog is not None and dialog.kind == "user":
        return dialog.title
    return f"user {message.sender_id}" if message.sender_id is not None else "unknown"


def meta_label(message: Message) -> str:
    """The line under a message: time, edited mark, delivery state and route."""
    parts = [time_label(message.sent_at)]
    if message.edited_at is not None:
        parts.append("edited")
    state = _STATE_LABELS.get(message.state, message.state)
    if state:
        parts.append(state)
    if message.transport:
        parts.append(_ROUTE_LABELS.get(message.transport, message.transport))
    return " · ".join(parts)


def body_text(message: Message) -> str:
    if message.deleted:
        return "This message was deleted."
    text = message.text
    if len(text) > DISPLAY_LIMIT_CHARS:
        hidden = len(text) - DISPLAY_LIMIT_CHARS
        return f"{text[:DISPLAY_LIMIT_CHARS]}\n[… {hidden:,} more characters not shown]"
    return text


def dialog_row_label(dialog: Dialog) -> str:
    return dialog.title or dialog.username or dialog.phone or str(dialog.id)


def unread_badge(count: int) -> str:
    if count <= 0:
        return ""
    return "999+" if count > 999 else str(count)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def file_status(file: FileRecord, progress: tuple[int, int] | None, outgoing: bool) -> str:
    """What a file message says about its bytes: size, progress, or what went wrong."""
    size = human_size(file.size)
    if file.state == "complete" and (outgoing or progress is None):
        return size
    if file.state == "failed":
        return f"{size} · transfer failed"
    if file.state == "cancelled":
        return f"{size} · cancelled"
    if file.state == "pending" and not outgoing:
        return f"{size} · not downloaded"
    if progress is not None and progress[1] > 0:
        done, total = progress
        verb = "sending" if outgoing else "receiving"
        return f"{human_size(done)} of {size} · {verb} {100 * done // total}%"
    return f"{size} · waiting"
