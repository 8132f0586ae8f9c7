"""``chimera --headless``: every worker, no window; receives and stores until SIGTERM or Ctrl+C."""

from __future__ import annotations

import sys

from chimera_tk.config import Config
from chimera_tk.errors import UserError
from chimera_tk.profiles import ProfilePaths


def run_headless(paths: ProfilePaths, config: Config) -> int:
    from chimera_tk.app import build_app

    app = build_app(paths, config, window=False)
    if app.lan is None and config.lan.enabled:
        if app.identity is None and app.telegram is None:
            app.shutdown()
            raise UserError("this profile has no certificate yet, so the LAN cannot start; "
                            "join a team first with: chimera --new --invite INVITE")
        # an expired certificate, or no certificate but Telegram: keep running without LAN
        print("chimera: the LAN is off for this profile (see the log); Telegram keeps working",
              file=sys.stderr, flush=True)
    print(f"chimera: running headless as user {app.identity.user_id if app.identity else '?'}"
          f" (profile {paths.name}); stop with Ctrl+C or SIGTERM", flush=True)
    app.run_headless()
    return 0
