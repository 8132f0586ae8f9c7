"""``chimera-identity``: the team admin's command. This release only describes what it will do."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chimera_tk import __version__

DESCRIPTION = """\
The Chimera identity provider and team certificate authority.

It proves that the person asking for a certificate for Telegram id N owns account N, and signs
certificates that bind each user's TLS key to their Telegram id. The commands init, serve, invite,
revoke and list come in a later release of Chimera; this build only prints this help."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chimera-identity", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"chimera-identity {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
