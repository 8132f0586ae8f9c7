"""The ``chimera`` command: the window by default, plus flags for profiles and checks.

Bad flags or values give one line on stderr and exit code 2; a problem the user can fix gives one
line and exit code 1; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from chimera_tk import __version__
from chimera_tk.config import THEMES, Config, load_config, save_config
from chimera_tk.errors import ConfigError, UserError
from chimera_tk.logging_setup import setup_logging
from chimera_tk.profiles import DEFAULT_PROFILE, ProfilePaths, profile_paths, validate_profile_name

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _profile_name(value: str) -> str:
    try:
        return validate_profile_name(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _data_dir(value: str) -> Path:
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} exists and is not a folder")
    if not value.strip():
        raise argparse.ArgumentTypeError("the data folder must not be empty")
    return path


def _common_flags(*, suppress: bool) -> argparse.ArgumentParser:
    """--profile/--data-dir/--verbose, accepted before or after a subcommand."""
    default = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    common = argparse.ArgumentParser(add_help=False)
    # None = not given: the window then asks when several profiles exist (see _chosen_profile)
    common.add_argument("--profile", type=_profile_name, default=default(None),
                        metavar="NAME", help=f"the profile to use (default: {DEFAULT_PROFILE}, "
                                             "or asked at start when there are several)")
    common.add_argument("--data-dir", type=_data_dir, default=default(None), metavar="DIR",
                        help="folder that holds the profiles (default: $CHIMERA_HOME or the "
                             "platform's user data folder)")
    common.add_argument("-v", "--verbose", action="store_true", default=default(False),
                        help="log details to the console")
    return common


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 <= seconds <= 86400:
        raise argparse.ArgumentTypeError("seconds must be between 0 and 86400")
    return seconds


def _user_id(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 2**63:
        raise argparse.ArgumentTypeError(f"{value!r} is not a Telegram user id")
    return int(value)


def _reason_code(value: str) -> int:
    from chimera_tk.pki.reasons import REASONS

    if not value.isascii() or not value.isdigit() or int(value) not in REASONS:
        raise argparse.ArgumentTypeError(
            f"{value[:20]!r} is not a reason number; use one of {', '.join(map(str, REASONS))}")
    return int(value)


def _note(value: str) -> str:
    from chimera_tk.pki.reasons import valid_note

    if not valid_note(value):
        raise argparse.ArgumentTypeError("the note must be one printable line of at most 500 "
                                         "characters")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chimera", parents=[_common_flags(suppress=False)],
        description="Chimera: a Telegram client and a serverless LAN messenger in one window.")
    parser.add_argument("--version", action="version", version=f"chimera {__version__}")
    parser.add_argument("--theme", choices=THEMES, help="override the theme in config.toml")
    parser.add_argument("--selftest", action="store_true",
                        help="build the whole app on a temporary profile, show and close the "
                             "window, and exit 0 if everything worked")
    parser.add_argument("--headless", action="store_true",
                        help="run every worker without a window, receiving and storing "
                             "messages until SIGTERM or Ctrl+C")
    parser.add_argument("--new", action="store_true",
                        help="make a new key and get a certificate from the team's CA")
    parser.add_argument("--renew", action="store_true",
                        help="get a new certificate for the same key from the team's CA")
    parser.add_argument("--revoke", action="store_true",
                        help="revoke this profile's certificate (asks why and to confirm)")
    revoking = parser.add_argument_group("answers for --revoke")
    revoking.add_argument("--reason", type=_reason_code, metavar="CODE",
                          help="reason number: 0 Unspecified, 1 KeyCompromise, 2 CACompromise, "
                               "3 AffiliationChanged, 4 Superseded, 5 CessationOfOperation, "
                               "6 CertificateHold, 8 RemoveFromCRL, 9 PrivilegeWithdrawn, "
                               "10 AACompromise")
    revoking.add_argument("--note", type=_note, metavar="TEXT", help="a free-text note")
    revoking.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--set-passphrase", action="store_true",
                        help="protect the private key with a passphrase, change it, or remove "
                             "it (asks on the terminal)")
    protecting = parser.add_argument_group("key passphrase (--set-passphrase, --new)")
    protecting.add_argument("--remember", action="store_true",
                            help="keep the passphrase in the system keyring, so that Chimera "
                                 "does not ask for it at start")
    protecting.add_argument("--passphrase-prompt", action="store_true",
                            help="with --new: protect the new key with a passphrase (asked "
                                 "twice on the terminal)")
    parser.add_argument("--invite", metavar="INVITE",
                        help="with --new or --install: the invite code from the team admin")
    by_code = parser.add_argument_group(
        "--new by a code sent on Telegram (instead of --invite); --phone and --code also apply")
    by_code.add_argument("--telegram-id", type=_user_id, metavar="N",
                         help="your Telegram user id: the identity provider sends a code there")
    by_code.add_argument("--fingerprint", metavar="SHA256",
                         help="the team root's fingerprint, from your team admin (not needed "
                              "if this profile already has the team's ca_bundle.pem)")
    parser.add_argument("--self-signed", action="store_true",
                        help="with --new --telegram-id N: no team, make a personal certificate "
                             "for pairing with people nearby (chimera pair)")
    parser.add_argument("--variables", action="store_true",
                        help="set the Telegram api id/hash, identity provider and CA addresses "
                             "and the broadcast address (asks, or takes the flags below)")
    parser.add_argument("--install", action="store_true",
                        help="first installation: database, Telegram sign-in, first sync, "
                             "then the certificate")
    setup = parser.add_argument_group("answers for --variables and --install")
    setup.add_argument("--api-id", metavar="ID")
    setup.add_argument("--api-hash", metavar="HASH")
    setup.add_argument("--identity-url", metavar="URL")
    setup.add_argument("--ca-url", metavar="URL")
    setup.add_argument("--broadcast", metavar="ADDRESSES",
                       help="comma-separated IPv4 broadcast addresses ('' = detect)")
    setup.add_argument("--phone", metavar="NUMBER")
    setup.add_argument("--code", metavar="CODE")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _common_flags(suppress=True)

    send = commands.add_parser("send", parents=[common], help="send a text or a file")
    send.add_argument("--to", type=_user_id, required=True, metavar="ID",
                      help="the recipient's Telegram user id")
    send.add_argument("--file", type=Path, metavar="PATH", help="a file to send")
    send.add_argument("text", nargs="?", help="the message text ('-' reads standard input)")
    send.add_argument("--wait", type=_seconds, default=30.0, metavar="S",
                      help="how long to wait for delivery (default: %(default)s s)")
    send.add_argument("--lan-only", action="store_true",
                      help="never fall back to Telegram for this message")

    peers = commands.add_parser("peers", parents=[common], help="list people on the LAN now")
    peers.add_argument("--wait", type=_seconds, default=6.0, metavar="S",
                       help="how long to listen for announcements (default: %(default)s s)")
    peers.add_argument("--json", action="store_true", help="print JSON")

    export = commands.add_parser("export", parents=[common], help="print stored messages")
    export.add_argument("--dialog", type=int, metavar="ID", help="only this dialog")
    export.add_argument("--json", action="store_true", required=True, help="print JSON")

    pair = commands.add_parser("pair", parents=[common],
                               help="pair with a person nearby without a team CA (compare a "
                                    "code on both screens)")
    pair.add_argument("--peer", metavar="ADDRESS",
                      help="call this address (their pairing window must be open); without "
                           "it, wait for them to call")
    pair.add_argument("--port", type=int, metavar="PORT",
                      help="pairing port (default: lan.pairing_port, 50053)")
    unpair = commands.add_parser("unpair", parents=[common],
                                 help="stop trusting a paired person's certificate")
    unpair.add_argument("user_id", type=_user_id, metavar="ID")
    commands.add_parser("pairs", parents=[common], help="list paired people")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.invite and not (args.new or args.install):
        parser.error("--invite goes with --new or --install")
    if args.self_signed and not (args.new and args.telegram_id is not None):
        parser.error("--self-signed goes with --new --telegram-id N")
    if args.self_signed and (args.invite or args.phone or args.code or args.fingerprint):
        parser.error("--self-signed takes no --invite, --phone, --code or --fingerprint")
    by_code = args.new and (args.telegram_id is not None or args.phone is not None)
    if (args.telegram_id is not None or args.fingerprint) and not args.new:
        parser.error("--telegram-id and --fingerprint go with --new")
    if by_code and args.invite:
        parser.error("--new takes either --invite or --telegram-id/--phone, not both")
    if args.new and args.telegram_id is not None and args.phone is not None:
        parser.error("--new takes either --telegram-id or --phone, not both")
    if args.new and args.code is not None and not by_code:
        parser.error("--code with --new goes with --telegram-id or --phone")
    if (args.reason is not None or args.note is not None or args.yes) and not args.revoke:
        parser.error("--reason, --note and --yes go with --revoke")
    if args.command == "send" and not (args.text or args.file):
        parser.error("send needs a TEXT or --file PATH")
    if args.passphrase_prompt and not args.new:
        parser.error("--passphrase-prompt goes with --new")
    if args.remember and not (args.set_passphrase or args.new):
        parser.error("--remember goes with --set-passphrase or --new")
    try:
        if args.selftest:
            return selftest(theme=args.theme, verbose=args.verbose)
        gui = not (args.new or args.set_passphrase or args.renew or args.revoke or
                   args.variables or args.install or args.command or args.headless)
        profile = _chosen_profile(args) if gui else (args.profile or DEFAULT_PROFILE)
        if profile is None:
            return 0  # the user closed the profile chooser
        paths = profile_paths(profile, args.data_dir).ensure()
        setup_logging(paths.logs, verbose=args.verbose)
        config = load_or_create_config(paths)
        if args.new and args.self_signed:
            from chimera_tk.net.pairing.commands import new_self_signed

            return new_self_signed(paths, args.telegram_id)
        if args.new:
            from chimera_tk.pki.commands import new_certificate, new_certificate_by_telegram

            if by_code:
                return new_certificate_by_telegram(
                    paths, config, user_id=args.telegram_id, phone=args.phone, code=args.code,
                    fingerprint=args.fingerprint, identity_url=args.identity_url,
                    passphrase_prompt=args.passphrase_prompt, remember=args.remember)
            return new_certificate(paths, config, invite=args.invite,
                                   passphrase_prompt=args.passphrase_prompt,
                                   remember=args.remember)
        if args.set_passphrase:
            from chimera_tk.pki.passphrase_commands import set_passphrase

            return set_passphrase(paths, remember=args.remember)
        if args.renew:
            from chimera_tk.pki.commands import renew

            return renew(paths, config)
        if args.revoke:
            from chimera_tk.pki.commands import revoke

            return revoke(paths, config, reason=args.reason, note=args.note, yes=args.yes)
        if args.variables:
            from chimera_tk.setup_flows import variables

            variables(paths, config, args)
            return 0
        if args.install:
            from chimera_tk.setup_flows import install

            return install(paths, config, args)
        if args.command in ("pair", "unpair", "pairs"):
            from chimera_tk.net.pairing import commands as pairing_commands

            return pairing_commands.run(args.command, paths, config, args)
        if args.command:
            from chimera_tk import commands

            return commands.run(args.command, paths, config, args)
        if args.headless:
            from chimera_tk.headless import run_headless

            return run_headless(paths, config)
        return run_gui(paths, config, theme=args.theme)
    except UserError as exc:
        print(f"chimera: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        log.debug("file system error", exc_info=True)
        print(f"chimera: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _chosen_profile(args: argparse.Namespace) -> str | None:
    """--profile if given; else the only profile; else the one the user picks in a window."""
    from chimera_tk.profiles import data_root, list_profiles, profile_in_use

    if args.profile is not None:
        return args.profile
    names = list_profiles(args.data_dir)
    from chimera_tk.views.profile_chooser import (
        ProfileChoice,
        choose_profile,
        last_used,
        needs_choice,
        remember_last_used,
    )

    if not needs_choice(names, explicit=False):
        return names[0] if names else DEFAULT_PROFILE
    root = data_root(args.data_dir)
    choices = [ProfileChoice(name, profile_in_use(profile_paths(name, args.data_dir)))
               for name in names]
    import tkinter as tk

    try:
        chosen = choose_profile(choices, args.theme or "system", last_used(root))
    except tk.TclError as exc:
        raise UserError(f"cannot open a window ({exc}); choose a profile with --profile NAME "
                        f"(one of: {', '.join(names)})") from None
    if chosen is not None:
        remember_last_used(root, chosen)
    return chosen


def load_or_create_config(paths: ProfilePaths) -> Config:
    config = load_config(paths.config_file)
    if not paths.config_file.exists():
        save_config(paths.config_file, config)  # so the user has a file to look at and edit
    return config


def run_gui(paths: ProfilePaths, config: Config, *, theme: str | None = None) -> int:
    from chimera_tk.app import build_app

    build_app(paths, config, theme=theme).run()
    return 0


def selftest(*, theme: str | None = None, verbose: bool = False) -> int:
    """Build the whole app on a throw-away profile, show the window, close it in order."""
    from chimera_tk.app import build_app

    with tempfile.TemporaryDirectory(prefix="chimera-selftest-") as tmp:
        paths = profile_paths("selftest", tmp).ensure()
        setup_logging(paths.logs, verbose=verbose)
        app = build_app(paths, load_or_create_config(paths), theme=theme)
        try:
            app.start()
            app.root.update()
            if not app.root.winfo_viewable():
                raise UserError("selftest: the main window did not appear")
            app.root.after(50, lambda: app.request_quit("selftest done"))
            app.root.mainloop()
        finally:
            app.shutdown()
        setup_logging(None, verbose=verbose)  # release the log file before the folder goes
    _import_later_stacks()
    print(f"chimera {__version__} selftest ok")
    return 0


# Imported only after the first paint or by one flow; a packaged build must still contain them.
_LATER_STACKS = ("telethon", "cryptography.x509", "aiohttp.web", "jwt", "pystray", "PIL.Image",
                 "tkinterdnd2", "keyring", "desktop_notifier", "chimera_tk.net.telegram.worker",
                 "chimera_tk.net.lan", "chimera_tk.identity.server", "chimera_tk.pki.commands",
                 "chimera_tk.desktop.tray", "chimera_tk.desktop.notifier")


def _import_later_stacks() -> None:
    import importlib

    for name in _LATER_STACKS:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"selftest: {name} cannot be imported ({exc})") from None
        except Exception as exc:  # pystray without a display backend raises other errors
            log.info("selftest: %s imported with a warning: %s", name, exc)


if __name__ == "__main__":
    sys.exit(main())
