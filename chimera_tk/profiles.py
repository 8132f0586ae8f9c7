"""Where a profile lives on disk, and the lock that keeps one profile to one process.

The data root comes from ``--data-dir``, else ``CHIMERA_HOME``, else the platform's per-user data
directory. Profiles are folders under ``<root>/profiles/``; several can exist and several can run at
once, each in its own process, but never the same one twice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from chimera_tk import APP_NAME
from chimera_tk.errors import ConfigError, ProfileLockedError
from chimera_tk.fsutil import ensure_private_dir

DEFAULT_PROFILE = "default"
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def data_root(data_dir: str | os.PathLike[str] | None = None,
              environ: Mapping[str, str] = os.environ) -> Path:
    """The folder holding every profile: the flag, else ``CHIMERA_HOME``, else platformdirs."""
    chosen = data_dir or environ.get("CHIMERA_HOME")
    if chosen:
        return Path(chosen).expanduser().absolute()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def validate_profile_name(name: str) -> str:
    if not _PROFILE_NAME.fullmatch(name) or name.endswith("."):
        raise ConfigError(
            f"invalid profile name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return name


@dataclass(frozen=True, slots=True)
class ProfilePaths:
    """Every path inside one profile; nothing else in the app builds profile paths by hand."""

    root: Path
    name: str

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def database(self) -> Path:
        return self.root / "chimera.db"

    @property
    def telegram_session(self) -> Path:
        return self.root / "telegram.session"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def thumbnails(self) -> Path:
        """Picture previews, named by content hash; safe to delete (they are made again)."""
        return self.root / "cache" / "thumbs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ca_bundle(self) -> Path:
        return self.root / "ca_bundle.pem"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def private_key(self, user_id: int) -> Path:
        return self.root / f"{user_id}.pem"

    def certificate(self, user_id: int) -> Path:
        return self.root / f"{user_id}_crt.pem"

    def ensure(self) -> ProfilePaths:
        """Create the profile's folders (0700). Safe to call on an existing profile."""
        for folder in (self.root.parent, self.root, self.downloads, self.logs):
            ensure_private_dir(folder)
        return self


def profile_paths(name: str = DEFAULT_PROFILE,
                  data_dir: str | os.PathLike[str] | None = None) -> ProfilePaths:
    name = validate_profile_name(name)
    return ProfilePaths(root=data_root(data_dir) / "profiles" / name, name=name)


def list_profiles(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    folder = data_root(data_dir) / "profiles"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and _PROFILE_NAME.fullmatch(p.name))


def profile_in_use(paths: ProfilePaths) -> bool:
    """Whether another process holds the profile's lock right now (a snapshot, for display)."""
    if not paths.lock_file.exists():
        return False
    try:
        fd = os.open(paths.lock_file, os.O_RDWR)
    except OSError:
        return False
    try:
        _lock_fd(fd)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock we may just have taken
    return False


class ProfileLock:
    """An advisory lock on the profile folder, held for the life of the process.

    The OS drops it when the process dies, so a killed Chimera never leaves a stale lock behind.
    """

    def __init__(self, paths: ProfilePaths) -> None:
        self._paths = paths
        self._fd: int | None = None

    def acquire(self) -> ProfileLock:
        fd = os.open(self._paths.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock_fd(fd)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise ProfileLockedError(
                f"profile {self._paths.name!r} is already open in another Chimera "
                f"(pid {holder}); close it first or choose another profile with --profile"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lock_fd(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
