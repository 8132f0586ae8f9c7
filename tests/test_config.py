from pathlib import Path

import pytest

from chimera_tk.config import Config, LanSettings, load_config, save_config
from chimera_tk.errors import ConfigError


def test_missing_file_gives_typed_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "config.toml")
    assert config == Config()
    assert config.lan.discovery_port == 50050
    assert config.lan.peer_port == 50052
    assert config.telegram.seed_messages == 10
    assert config.team.cert_lifetime_hours == 240


def test_round_trip_keeps_every_value(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    original = Config(lan=LanSettings(interval_s=2.5, broadcast_addresses=("10.9.0.255",)))
    save_config(path, original)
    assert load_config(path) == original
    assert path.stat().st_mode & 0o777 == 0o600


def test_saving_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save_config(path, Config())
    save_config(path, Config(lan=LanSettings(peer_port=6000)))
    assert load_config(path).lan.peer_port == 6000
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("[lan]\ndiscovery_port = 'x'\n", "lan.discovery_port must be a whole number"),
    ("[lan]\npeer_port = 70000\n", "lan.peer_port must be a port number"),
    ("[lan]\nenabled = 1\n", "lan.enabled must be true or false"),
    ("[ui]\ntheme = 'purple'\n", "ui.theme must be one of"),
    ("[lan]\nbroadcast_addresses = [1, 2]\n", "list of strings"),
    ("lan = 3\n", "[lan] must be a table"),
    ("this is not toml", "not valid TOML"),
])
def test_bad_values_are_refused_with_the_key_named(tmp_path: Path, text: str,
                                                    fragment: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(path)
    assert fragment in str(caught.value)


def test_unknown_keys_are_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[future]\nx = 1\n[lan]\nnew_knob = true\ninterval_s = 3\n")
    config = load_config(path)
    assert config.lan.interval_s == 3.0


def test_download_policy_keeps_channels_manual_unless_the_user_says_always(tmp_path) -> None:
    from chimera_tk.config import FileSettings, downloads_automatically, downloads_folder

    default = FileSettings()
    assert downloads_automatically(default, "user", 10)
    assert downloads_automatically(default, "group", 10)
    assert not downloads_automatically(default, "channel", 10)
    assert not downloads_automatically(default, "supergroup", 10)
    assert not downloads_automatically(default, "user", 51 * 2**20)  # over 50 MB
    assert downloads_automatically(FileSettings(auto_download="always"), "channel", 10)
    assert not downloads_automatically(FileSettings(auto_download="never"), "user", 10)
    assert downloads_automatically(FileSettings(auto_download_max_mb=0), "user", 2**40)
    assert downloads_folder(default, tmp_path / "p") == tmp_path / "p"
    chosen = FileSettings(downloads_dir=str(tmp_path / "mine"))
    assert downloads_folder(chosen, tmp_path / "p") == tmp_path / "mine"
