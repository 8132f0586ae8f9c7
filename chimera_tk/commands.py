"""The terminal commands ``chimera send``, ``chimera peers`` and ``chimera export``.

``send`` works whether or not Chimera is already running on the profile: when another process
holds the profile, the message is written to the shared database (message and outbox row in one
transaction) and that process sends it within a second; otherwise this process starts the LAN
itself for as long as it waits. Either way the exit code is 0 only once the recipient's machine
acknowledged the message.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from chimera_tk.config import Config
from chimera_tk.errors import ProfileLockedError, UserError
from chimera_tk.net.peer.worker import placeholder_title
from chimera_tk.profiles import ProfileLock, ProfilePaths
from chimera_tk.router import Router
from chimera_tk.store import Store
from chimera_tk.store.records import Message

POLL_S = 0.1


def run(command: str, paths: ProfilePaths, config: Config, args: argparse.Namespace) -> int:
    if command == "send":
        return send(paths, config, args)
    if command == "peers":
        return peers(config, args)
    if command == "export":
        return export(paths, args)
    raise UserError(f"unknown command {command}")


# -- send -----------------------------------------------------------------------------------------


def send(paths: ProfilePaths, config: Config, args: argparse.Namespace) -> int:
    if args.file is not None and not args.file.is_file():
        raise UserError(f"{args.file} is not a file")
    if args.text == "-":  # the text comes from standard input (pipes, long texts)
        args.text = sys.stdin.read()
    if _profile_in_use(paths):
        return _send_through_running_app(paths, args)
    return _send_with_own_lan(paths, config, args)


def _profile_in_use(paths: ProfilePaths) -> bool:
    try:
        ProfileLock(paths).acquire().release()
    except ProfileLockedError:
        return True
    return False


def _queue_message(router: Router, store: Store, args: argparse.Namespace) -> Message:
    store.dialogs.ensure(args.to, "user", placeholder_title(args.to))
    if args.file is not None:
        return router.send_file(args.to, args.file, caption=args.text or "",
                                lan_only=args.lan_only)
    return router.send_text(args.to, args.text, lan_only=args.lan_only)


def _send_through_running_app(paths: ProfilePaths, args: argparse.Namespace) -> int:
    store = Store.open(paths.database)
    try:
        message = _queue_message(Router(store, lambda _e: None), store, args)
        print(f"queued in the running Chimera as message {message.uid}", file=sys.stderr)
        return _await_delivery(lambda: store.messages.get(message.id), args,
                               lambda: _why_not_sent(store, message.id))
    finally:
        store.close()


def _send_with_own_lan(paths: ProfilePaths, config: Config, args: argparse.Namespace) -> int:
    from chimera_tk.app import build_app

    app = build_app(paths, config, window=False)
    if app.lan is None:
        app.shutdown()
        raise UserError("this profile has no certificate, so it cannot send over the LAN; "
                        "join a team first with: chimera --new --invite INVITE")
    message = _queue_message(app.router, app.store, args)
    outcome: dict[str, Any] = {}  # "message", and "reason" when it failed
    deadline = time.monotonic() + args.wait

    def finished() -> bool:
        current = app.store.messages.get(message.id)
        outcome["message"] = current
        if current.state == "failed":
            outcome["reason"] = _why_not_sent(app.store, message.id)
        return current.state in ("delivered", "sent", "failed") or time.monotonic() > deadline

    app.run_headless(until=finished)
    return _report(outcome["message"], args, outcome.get("reason"))


def _why_not_sent(store: Store, message_id: int) -> str | None:
    """The last error the outbox recorded for ``message_id`` (e.g. the receiver's refusal)."""
    try:
        return store.outbox.get(message_id).last_error
    except KeyError:
        return None


def _await_delivery(current: Callable[[], Message], args: argparse.Namespace,
                    why: Callable[[], str | None] = lambda: None) -> int:
    deadline = time.monotonic() + args.wait
    message = current()
    while message.state not in ("delivered", "sent", "failed") and time.monotonic() < deadline:
        time.sleep(POLL_S)
        message = current()
    return _report(message, args, why() if message.state == "failed" else None)


def _report(message: Message, args: argparse.Namespace, reason: str | None = None) -> int:
    if message.state in ("delivered", "sent"):
        route = "over the LAN" if message.transport == "lan" else "through Telegram"
        print(f"delivered {route} to {args.to} (message {message.uid})")
        return 0
    if message.state == "failed":
        raise UserError(f"not delivered: the message to {args.to} failed"
                        + (f" ({reason})" if reason else ""))
    raise UserError(
        f"not delivered within {args.wait:g} s: user {args.to} did not answer on the LAN. "
        "The message stays queued and goes out when Chimera runs and the peer is reachable.")


# -- peers ----------------------------------------------------------------------------------------


def peers(config: Config, args: argparse.Namespace) -> int:
    """Listen to discovery announcements for ``--wait`` seconds (sending nothing) and list them."""
    from chimera_tk.errors import RemoteProtocolError
    from chimera_tk.net.discovery.protocol import Announcement, decode_datagram

    heard: dict[int, dict[str, object]] = {}
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        listener.bind(("", config.lan.discovery_port))
    except OSError as exc:
        raise UserError(f"cannot listen on UDP port {config.lan.discovery_port}: "
                        f"{exc.strerror}") from None
    deadline = time.monotonic() + args.wait
    with listener:
        while (remaining := deadline - time.monotonic()) > 0:
            listener.settimeout(remaining)
            try:
                data, (address, _port) = listener.recvfrom(2048)
            except TimeoutError:
                break
            try:
                announcement = decode_datagram(data)
            except RemoteProtocolError:
                continue
            if isinstance(announcement, Announcement):
                heard[announcement.user_id] = {
                    "user_id": announcement.user_id, "address": address,
                    "port": announcement.tls_port, "instance": announcement.instance,
                    "verified": False}
    found = [heard[user_id] for user_id in sorted(heard)]
    if args.json:
        print(json.dumps(found, indent=2))
    elif not found:
        print(f"no one announced themselves on the LAN in {args.wait:g} s")
    else:
        print(f"{'USER ID':>20}  {'ADDRESS':<15}  PORT   (announced; verified on first contact)")
        for peer in found:
            print(f"{peer['user_id']:>20}  {peer['address']:<15}  {peer['port']}")
    return 0


# -- export ---------------------------------------------------------------------------------------


def export(paths: ProfilePaths, args: argparse.Namespace) -> int:
    """Print the stored messages as a JSON array, streaming (a profile may hold millions)."""
    if not paths.database.exists():
        raise UserError(f"profile {paths.name} has no messages yet")
    store = Store.open(paths.database)
    try:
        out = sys.stdout
        out.write("[")
        first = True
        for row in _export_rows(store, args.dialog):
            out.write(("\n  " if first else ",\n  ") + json.dumps(row, ensure_ascii=False))
            first = False
        out.write("\n]\n" if not first else "]\n")
    finally:
        store.close()
    return 0


def _export_rows(store: Store, dialog_id: int | None) -> Iterator[dict[str, object]]:
    query = """SELECT m.uid, m.dialog_id, m.sender_id, m.sender_name, m.outgoing, m.transport,
                      m.state, m.text, m.sent_at, m.edited_at, m.deleted, f.name, f.path,
                      f.sha256, f.size, f.state
               FROM messages AS m LEFT JOIN files AS f ON f.id = m.file_id"""
    params: tuple[object, ...] = ()
    if dialog_id is not None:
        query += " WHERE m.dialog_id = ?"
        params = (dialog_id,)
    query += " ORDER BY m.dialog_id, m.sent_at, m.id"
    for row in store.conn.execute(query, params):
        yield {
            "uid": row[0], "dialog": row[1], "sender": row[2], "sender_name": row[3],
            "direction": "out" if row[4] else "in", "route": row[5], "state": row[6],
            "text": row[7], "sent_at": _iso(row[8]), "edited_at": _iso(row[9]),
            "deleted": bool(row[10]),
            "file": None if row[11] is None else {
                "name": row[11], "path": row[12], "sha256": row[13], "size": row[14],
                "state": row[15]},
        }


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")

