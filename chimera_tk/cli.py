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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chimera",
        description="Chimera: a Telegram client and a serverless LAN messenger in one window.")
    parser.add_argument("--version", action="version", version=f"chimera {__version__}")
    parser.add_argument("--profile", type=_profile_name, default=DEFAULT_PROFILE,
                        metavar="NAME", help="the profile to use (default: %(default)s)")
    parser.add_argument("--data-dir", type=_data_dir, metavar="DIR",
                        help="folder that holds the profiles (default: $CHIMERA_HOME or the "
                             "platform's user data folder)")
    parser.add_argument("--theme", choices=THEMES, help="override the theme in config.toml")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to the console")
    parser.add_argument("--selftest", action="store_true",
                        help="build the whole app on a temporary profile, show and close the "
                             "window, and exit 0 if everything worked")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.selftest:
            return selftest(theme=args.theme, verbose=args.verbose)
        paths = profile_paths(args.profile, args.data_dir).ensure()
        setup_logging(paths.logs, verbose=args.verbose)
        return run_gui(paths, load_or_create_config(paths), theme=args.theme)
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
    print(f"chimera {__version__} selftest ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
