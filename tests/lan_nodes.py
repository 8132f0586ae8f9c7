"""Chimera processes on the hosts of a test network (tests/netns.py), driven as a user would.

:class:`AppNode` is one profile on one host: its identity (from the test team CA), its config,
and the real ``chimera`` command run inside the host's namespace (``--headless``, ``send``,
``export``), with the profile's log file to wait on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from chimera_tk.config import Config, LanSettings, TeamSettings, save_config
from chimera_tk.profiles import ProfilePaths, profile_paths
from tests.netns import Host
from tests.pki_factory import TeamCA


class AppNode:
    def __init__(self, host: Host, data_dir: Path, name: str, user_id: int,
                 ca: TeamCA | None = None, *, lan: LanSettings | None = None) -> None:
        self.host = host
        self.data_dir = data_dir
        self.name = name
        self.user_id = user_id
        self.paths: ProfilePaths = profile_paths(name, data_dir).ensure()
        if ca is not None:
            ca.write_identity(self.paths.root, user_id)
        save_config(self.paths.config_file,
                    Config(lan=lan or LanSettings(), team=TeamSettings(display_name=name)))
        self.process: subprocess.Popen | None = None

    def chimera(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "chimera_tk", "--data-dir", str(self.data_dir),
                "--profile", self.name, *args]

    @property
    def log_file(self) -> Path:
        return self.paths.logs / "chimera.log"

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 20.0, *, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode}):\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: {text!r} not in the log:\n{self.log()[-3000:]}")

    def start_headless(self) -> None:
        started = self.log().count("LAN up as user")
        self.process = self.host.popen(self.chimera("--headless", "-v"),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_for_log("LAN up as user", count=started + 1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def send(self, to: int, text: str | None = None, *, file: Path | None = None,
             wait: float = 20, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        args = ["send", "--to", str(to), "--wait", str(wait), *extra]
        if file is not None:
            args += ["--file", str(file)]
        if text is not None:
            args.append(text)
        return self.host.run(self.chimera(*args), check=False, timeout=wait + 60)

    def export(self) -> list[dict]:
        result = self.host.run(self.chimera("export", "--json"), timeout=60)
        return json.loads(result.stdout)
