"""The seed's terminal flows: ``chimera --variables`` and ``chimera --install``.

``--variables`` asks for (or takes as flags) the Telegram api id/hash, the identity provider and
CA addresses and the broadcast address, and writes them to config.toml (never to a Python file,
as the seed did). ``--install`` makes the database, signs in to Telegram (phone, code, 2FA
password), runs the first sync with progress, then enrolls the certificate, as the seed did.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import ipaddress
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from chimera_tk.config import Config, save_config
from chimera_tk.errors import ConfigError, UserError
from chimera_tk.events import SyncProgress
from chimera_tk.profiles import ProfileLock, ProfilePaths
from chimera_tk.store import Store

if TYPE_CHECKING:
    from chimera_tk.net.telegram.worker import TelegramWorker

API_HELP = ("Telegram api_id and api_hash come from https://my.telegram.org → "
            "API development tools (one application per account).")


class Prompter:
    """Asks on a terminal; without one, every missing answer is a one-line error."""

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None,
                 secret: Callable[[str], str] | None = None) -> None:
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._secret = secret or getpass.getpass

    def ask(self, question: str, current: str = "", *, flag: str) -> str:
        if not self._in.isatty() and self._in is sys.stdin:
            if current:
                return current
            raise UserError(f"{question.rstrip(': ')} is needed: pass {flag}")
        hint = f" [{current}]" if current else ""
        print(f"{question}{hint}: ", end="", file=self._out, flush=True)
        answer = self._in.readline().strip()
        return answer or current

    def secret(self, question: str) -> str:
        return self._secret(f"{question}: ")

    def say(self, text: str) -> None:
        print(text, file=self._out, flush=True)


def variables(paths: ProfilePaths, config: Config, args: argparse.Namespace,
              prompter: Prompter | None = None) -> Config:
    """Fill in the settings the seed kept in a Python file; returns the saved config."""
    ask = prompter or Prompter()
    telegram, team, lan = config.telegram, config.team, config.lan
    ask.say(API_HELP)
    api_id_text = args.api_id or ask.ask("Telegram api_id", str(telegram.api_id or ""),
                                         flag="--api-id")
    if not api_id_text.isdigit() or int(api_id_text) <= 0:
        raise ConfigError(f"api_id must be a positive number, not {api_id_text!r}")
    api_hash = args.api_hash or ask.ask("Telegram api_hash", telegram.api_hash,
                                        flag="--api-hash")
    if len(api_hash) != 32 or any(c not in "0123456789abcdef" for c in api_hash.lower()):
        raise ConfigError("api_hash must be the 32 hexadecimal characters Telegram shows")
    identity_url = args.identity_url if args.identity_url is not None else ask.ask(
        "Identity provider address (https://HOST:PORT, empty for none)", team.identity_url,
        flag="--identity-url")
    ca_url = args.ca_url if args.ca_url is not None else ask.ask(
        "CA address (https://HOST:PORT, empty for the provider's)",
        team.ca_url or identity_url, flag="--ca-url")
    broadcast = args.broadcast if args.broadcast is not None else ask.ask(
        "Broadcast address (empty: detect automatically)", ",".join(lan.broadcast_addresses),
        flag="--broadcast")
    addresses = tuple(part.strip() for part in broadcast.split(",") if part.strip())
    for address in addresses:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ConfigError(f"{address!r} is not an IPv4 broadcast address") from None
    for url in (identity_url, ca_url):
        if url and not url.startswith("https://"):
            raise ConfigError(f"{url!r} must start with https://")
    updated = dataclasses.replace(
        config,
        telegram=dataclasses.replace(telegram, api_id=int(api_id_text), api_hash=api_hash.lower()),
        team=dataclasses.replace(team, identity_url=identity_url, ca_url=ca_url),
        lan=dataclasses.replace(lan, broadcast_addresses=addresses))
    save_config(paths.config_file, updated)
    ask.say(f"Saved to {paths.config_file}")
    return updated


def install(paths: ProfilePaths, config: Config, args: argparse.Namespace, *,
            prompter: Prompter | None = None, client_factory: Callable | None = None) -> int:
    """Tables, Telegram sign-in, first sync, then the certificate — the seed's --install."""
    from chimera_tk.net.telegram.worker import TelegramWorker

    ask = prompter or Prompter()
    lock = ProfileLock(paths).acquire()
    try:
        Store.open(paths.database).close()
        ask.say("Database ready.")
        if not (config.telegram.api_id and config.telegram.api_hash):
            config = variables(paths, config, args, ask)
        def show_progress(event: object) -> None:
            if isinstance(event, SyncProgress):
                ask.say(f"  dialogs {event.done}/{event.total}")

        worker = TelegramWorker(config.telegram, paths, show_progress,
                                client_factory=client_factory)
        worker.start()
        try:
            _sign_in(worker, ask, args)
            ask.say("Signed in. Downloading your dialogs and their latest messages…")
            count = worker.wait_synced().result(600)
            ask.say(f"First sync done: {count} messages stored.")
        finally:
            worker.stop()
            worker.join(10)
    finally:
        lock.release()
    if args.invite or (sys.stdin.isatty() and prompter is None):
        from chimera_tk.pki.commands import new_certificate

        return new_certificate(paths, config, invite=args.invite)
    ask.say("To use the LAN, join a team: chimera --new --invite INVITE")
    return 0


def _sign_in(worker: TelegramWorker, ask: Prompter, args: argparse.Namespace) -> None:
    if worker.is_signed_in().result(60):
        return
    phone = args.phone or ask.ask("Phone number (international format, e.g. +5521…)",
                                  flag="--phone")
    worker.request_code(phone).result(60)
    code = args.code or ask.ask("The code Telegram sent you", flag="--code")
    if worker.submit_code(code).result(60):
        return
    password = ask.secret("This account has a two-step verification password")
    worker.submit_password(password).result(60)
