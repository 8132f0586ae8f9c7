"""``chimera-identity``: the team admin's command for the team CA and identity provider.

``init`` makes a CA folder, ``invite`` prints a one-time invite code (as its last line), ``serve``
answers enrollment over HTTPS, ``telegram-login`` signs in the Telegram account that sends
enrollment codes, ``step-ca`` hands signing to a real step-ca, ``list`` shows issued
certificates (and which are revoked) and open invites, ``revoke`` puts certificates on the CRL,
offline on the state file. Bad flags give one line and exit code 2; problems the admin can fix
give one line and exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

from chimera_tk import __version__
from chimera_tk.errors import UserError
from chimera_tk.pki.invite import MAX_NAME_LENGTH
from chimera_tk.pki.reasons import REASONS, valid_note
from chimera_tk.pki.urls import InvalidBaseUrl, normalize_base_url
from chimera_tk.pki.userid import InvalidUserId, parse_user_id

DESCRIPTION = """\
The Chimera identity provider and team certificate authority.

It signs certificates that bind each user's TLS key to their user id. The admin starts a team
with init, hands out one-time invite codes with invite, and runs serve where the team can reach
it; a user joins with: chimera --new --invite CODE"""
MAX_TEAM_NAME_LENGTH = 40
MAX_VALID_HOURS = 24 * 365


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except UserError as exc:
        print(f"chimera-identity: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"chimera-identity: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chimera-identity", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"chimera-identity {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument("--dir", type=Path, required=True, metavar="DIR",
                        help="the CA folder (keys, certificates, state)")

    init = commands.add_parser("init", parents=[folder], help="create a new team CA in DIR")
    init.add_argument("--url", type=_base_url, metavar="https://HOST:PORT",
                      help="the address clients will use (default: this machine's LAN IPv4 "
                           "address, port 8443)")
    init.add_argument("--name", type=_team_name, default=None, metavar="TEAM",
                      help="the team's name, shown in its certificates")
    init.set_defaults(run=_init)

    invite = commands.add_parser("invite", parents=[folder],
                                 help="print a one-time invite code for one user id")
    invite.add_argument("--id", type=_user_id, required=True, metavar="N",
                        help="the user id the certificate will be for")
    invite.add_argument("--name", type=_person_name, default="", metavar="NAME",
                        help="who the invite is for (shown to them and in list)")
    invite.add_argument("--valid-hours", type=_hours, default=72.0, metavar="H",
                        help="how long the invite can be used (default: %(default)g)")
    invite.set_defaults(run=_invite)

    serve = commands.add_parser("serve", parents=[folder], help="answer enrollment over HTTPS")
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="where to listen (default: all addresses, the port of the CA's url)")
    serve.set_defaults(run=_serve)

    login = commands.add_parser(
        "telegram-login", parents=[folder],
        help="sign in the Telegram account (user or bot) that sends enrollment codes")
    login.add_argument("--api-id", type=_api_id, required=True, metavar="ID",
                       help="the app's api_id from my.telegram.org")
    login.add_argument("--api-hash", type=_api_hash, required=True, metavar="HASH",
                       help="the app's api_hash from my.telegram.org")
    account = login.add_mutually_exclusive_group()
    account.add_argument("--bot-token", metavar="TOKEN",
                         help="sign in as this bot (from @BotFather) instead of a user account")
    account.add_argument("--phone", metavar="+NUMBER",
                         help="the user account's phone number (asked for if not given)")
    login.set_defaults(run=_telegram_login)

    step_ca = commands.add_parser(
        "step-ca", parents=[folder],
        help="let a real step-ca sign, renew and revoke; write its ca.json from DIR's keys")
    step_ca.add_argument("--ca-url", type=_base_url, required=True, metavar="https://HOST:PORT",
                         help="the address clients will use for the step-ca")
    step_ca.add_argument("--listen", metavar="HOST:PORT",
                         help="step-ca's listening address (default: all, the port of --ca-url)")
    step_ca.set_defaults(run=_step_ca)

    listing = commands.add_parser("list", parents=[folder],
                                  help="show issued certificates and open invites")
    listing.set_defaults(run=_list)

    revoke = commands.add_parser("revoke", parents=[folder],
                                 help="revoke a certificate, or every valid one of a user id")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", type=_serial, metavar="S",
                       help="the serial in hex, as list shows it")
    which.add_argument("--id", type=_user_id, metavar="N",
                       help="revoke every unexpired, unrevoked certificate of this user id")
    revoke.add_argument("--reason", type=_reason_code, default=0, metavar="CODE",
                        help="RFC 5280 reason code: " + ", ".join(
                            f"{code} {name}" for code, name in REASONS.items())
                        + " (default: %(default)s)")
    revoke.add_argument("--note", type=_note, default="", metavar="TEXT",
                        help="a free-text note kept with the revocation")
    revoke.set_defaults(run=_revoke)
    return parser


def _init(args: argparse.Namespace) -> int:
    from chimera_tk.identity.bootstrap import DEFAULT_TEAM_NAME, create_authority, default_url
    from chimera_tk.identity.layout import AuthorityFiles

    url = args.url or default_url()
    settings = create_authority(args.dir, url=url, team_name=args.name or DEFAULT_TEAM_NAME)
    authority = _open(args.dir)
    fingerprint = authority.root_fingerprint
    authority.close()
    files = AuthorityFiles(args.dir.expanduser().absolute())
    print(f"Created the CA of {settings.team_name!r} in {files.root}")
    print(f"  address clients use:  {settings.url}")
    print(f"  root fingerprint:     {fingerprint}")
    print(f"  provisioner:          {settings.provisioner_name} (kid {settings.provisioner_kid})")
    print(f"Next: chimera-identity serve --dir {files.root}")
    print(f"      chimera-identity invite --dir {files.root} --id USER_ID --name NAME")
    return 0


def _invite(args: argparse.Namespace) -> int:
    authority = _open(args.dir)
    try:
        valid_for = timedelta(hours=args.valid_hours)
        code = authority.create_invite(args.id, args.name, valid_for)
    finally:
        authority.close()
    until = datetime.now(UTC) + valid_for
    who = f"id {args.id}" + (f" ({args.name})" if args.name else "")
    print(f"Invite for {who}, usable once until {until:%Y-%m-%d %H:%M} UTC.")
    print("They join with: chimera --new --invite CODE, where CODE is the next line.")
    print(code)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from chimera_tk.identity.server import parse_listen, serve
    from chimera_tk.logging_setup import debug_log_forced
    from chimera_tk.pki.urls import url_port

    logging.basicConfig(level=logging.DEBUG if debug_log_forced() else logging.INFO,
                        stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    authority = _open(args.dir)
    try:
        host, port = parse_listen(args.listen or f"0.0.0.0:{url_port(authority.settings.url)}")
        authority.ensure_server_certificate()
        serve(authority, host, port)
    finally:
        authority.close()
    return 0


def _telegram_login(args: argparse.Namespace) -> int:
    import asyncio

    from chimera_tk.identity.layout import AuthorityFiles
    from chimera_tk.identity.telegram_codes import (
        TelegramLogin,
        save_telegram_login,
        telegram_session_path,
    )

    _open(args.dir).close()  # a CA folder, or one clear line
    files = AuthorityFiles(args.dir.expanduser().absolute())

    async def sign_in() -> str:
        from telethon import TelegramClient

        client = TelegramClient(str(telegram_session_path(files)), args.api_id, args.api_hash)
        # Telethon's start() asks on the terminal for the phone, the login code and the
        # two-step password, as needed.
        await client.start(phone=args.phone or (lambda: input("Phone (+...): ")),
                           bot_token=args.bot_token)
        try:
            me = await client.get_me()
            return f"{'bot' if me.bot else 'user'} {me.id}" + \
                (f" (@{me.username})" if me.username else "")
        finally:
            await client.disconnect()

    try:
        who = asyncio.run(sign_in())
    except Exception as exc:  # Telethon's many errors: one line for the admin
        raise UserError(f"Telegram sign-in failed: {exc}") from None
    session = telegram_session_path(files).with_suffix(".session")
    if session.exists():
        session.chmod(0o600)
    save_telegram_login(files, TelegramLogin(api_id=args.api_id, api_hash=args.api_hash))
    print(f"Signed in as Telegram {who}; serve will send enrollment codes from this account.")
    print("Users then join with: chimera --new --telegram-id THEIR_ID")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from chimera_tk.identity.authority import ApiError

    authority = _open(args.dir)
    now = datetime.now(UTC)
    try:
        if args.serial is not None:
            serials = [args.serial]
        else:
            revoked = {r.serial for r in authority.state.revocations()}
            serials = [c.serial for c in authority.state.certificates()
                       if c.user_id == args.id and c.not_after > now and c.serial not in revoked]
            if not serials:
                raise UserError(f"id {args.id} has no valid certificate to revoke")
        for serial in serials:
            try:
                authority.revoke(serial, args.reason, args.note, ott=authority.revoke_token(serial))
            except ApiError as refusal:
                raise UserError(f"serial {serial:x}: {refusal.message}") from None
            print(f"Revoked serial {serial:x} ({REASONS[args.reason]}).")
    finally:
        authority.close()
    if authority.settings.ca_url and authority.settings.ca_url != authority.settings.url:
        print(f"The step-ca at {authority.settings.ca_url} refuses to renew it.")
    print("It is on the CRL now; peers refuse it once they fetch the CRL again.")
    return 0


def _step_ca(args: argparse.Namespace) -> int:
    from chimera_tk.identity.step_ca import use_step_ca

    _open(args.dir).close()  # a CA folder, or one clear line
    config_path = use_step_ca(args.dir, args.ca_url, listen=args.listen)
    print(f"Wrote {config_path}; enrollment tokens now name the step-ca at {args.ca_url}.")
    print(f"Start it with: step-ca {config_path}")
    print(f"Keep serving enrollment with: chimera-identity serve --dir {args.dir}")
    return 0


def _list(args: argparse.Namespace) -> int:
    authority = _open(args.dir)
    now = datetime.now(UTC)
    try:
        certificates = authority.state.certificates()
        invites = authority.state.open_invites(now)
        revocations = {r.serial: r for r in authority.state.revocations()}
    finally:
        authority.close()
    print(f"Issued certificates ({len(certificates)}):")
    for cert in certificates:
        state = "valid" if cert.not_after > now else "expired"
        if cert.serial in revocations:
            revocation = revocations[cert.serial]
            state = f"revoked {revocation.revoked_at:%Y-%m-%d %H:%M} UTC, " \
                    f"{REASONS[revocation.reason_code]}" + \
                    (f": {revocation.note}" if revocation.note else "")
        holder = str(cert.user_id) if cert.user_id else "? (never reported)"
        print(f"  id {holder:<20} serial {cert.serial:x}  "
              f"until {cert.not_after:%Y-%m-%d %H:%M} UTC  {state}")
    print(f"Open invites ({len(invites)}):")
    for invite in invites:
        print(f"  id {invite.user_id:<20} {invite.name or '-':<24} "
              f"until {invite.expires_at:%Y-%m-%d %H:%M} UTC")
    return 0


def _open(directory: Path):  # -> Authority, imported late to keep --help fast
    from chimera_tk.identity.authority import Authority

    folder = directory.expanduser().absolute()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a CA folder; create one with: "
                        f"chimera-identity init --dir {folder}")
    return Authority.open(folder)


def _base_url(value: str) -> str:
    try:
        return normalize_base_url(value)
    except InvalidBaseUrl as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _user_id(value: str) -> int:
    try:
        return parse_user_id(value)
    except InvalidUserId:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a user id") from None


def _api_id(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 0 < int(value) < 2**31:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not an api_id (digits)")
    return int(value)


def _api_hash(value: str) -> str:
    if not 16 <= len(value) <= 64 or any(ch not in "0123456789abcdef" for ch in value.lower()):
        raise argparse.ArgumentTypeError("the api_hash is 32 hexadecimal characters")
    return value


def _serial(value: str) -> int:
    text = value.lower().removeprefix("0x")
    if not 0 < len(text) <= 50 or any(ch not in "0123456789abcdef" for ch in text) \
            or int(text, 16) == 0:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a serial in hex (see list)")
    return int(text, 16)


def _reason_code(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) not in REASONS:
        raise argparse.ArgumentTypeError(
            f"{value[:40]!r} is not a reason code; use one of {', '.join(map(str, REASONS))}")
    return int(value)


def _note(value: str) -> str:
    if not valid_note(value):
        raise argparse.ArgumentTypeError("the note must be one printable line of at most "
                                         "500 characters")
    return value


def _team_name(value: str) -> str:
    if not 0 < len(value) <= MAX_TEAM_NAME_LENGTH or not value.isprintable():
        raise argparse.ArgumentTypeError(
            f"the team name must be 1-{MAX_TEAM_NAME_LENGTH} printable characters")
    return value


def _person_name(value: str) -> str:
    if len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise argparse.ArgumentTypeError(
            f"the name must be at most {MAX_NAME_LENGTH} printable characters")
    return value


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hours") from None
    if not 0 < hours <= MAX_VALID_HOURS:
        raise argparse.ArgumentTypeError(f"hours must be more than 0 and at most "
                                         f"{MAX_VALID_HOURS}")
    return hours


if __name__ == "__main__":
    sys.exit(main())
