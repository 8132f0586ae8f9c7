import os
from pathlib import Path

import pytest

from chimera_tk.errors import ConfigError, ProfileLockedError
from chimera_tk.profiles import ProfileLock, data_root, list_profiles, profile_paths


def test_data_dir_flag_wins_over_environment(tmp_path: Path) -> None:
    env = {"CHIMERA_HOME": str(tmp_path / "env")}
    assert data_root(tmp_path / "flag", env) == tmp_path / "flag"
    assert data_root(None, env) == tmp_path / "env"


def test_default_root_is_the_platform_user_data_dir() -> None:
    root = data_root(None, {})
    assert "Chimera" in root.parts[-1] or "chimera" in str(root).lower()


def test_profiles_are_separate_private_folders(tmp_path: Path) -> None:
    alice = profile_paths("alice", tmp_path).ensure()
    bob = profile_paths("bob", tmp_path).ensure()
    assert alice.database != bob.database
    assert list_profiles(tmp_path) == ["alice", "bob"]
    for folder in (alice.root, alice.downloads, alice.logs, alice.root.parent):
        assert folder.stat().st_mode & 0o777 == 0o700
    assert alice.private_key(42).name == "42.pem"
    assert alice.certificate(42).name == "42_crt.pem"
    assert alice.ca_bundle.name == "ca_bundle.pem"


@pytest.mark.parametrize("name", ["../x", "", "a/b", ".hidden", "x" * 65, "bad name", "end."])
def test_unsafe_profile_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        profile_paths(name)


def test_one_profile_cannot_be_opened_twice_but_two_profiles_can(tmp_path: Path) -> None:
    alice = profile_paths("alice", tmp_path).ensure()
    bob = profile_paths("bob", tmp_path).ensure()
    first = ProfileLock(alice).acquire()
    other = ProfileLock(bob).acquire()
    with pytest.raises(ProfileLockedError, match=str(os.getpid())):
        ProfileLock(alice).acquire()
    first.release()
    ProfileLock(alice).acquire().release()
    other.release()
