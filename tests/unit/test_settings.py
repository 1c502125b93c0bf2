from __future__ import annotations

from pathlib import Path

import pytest

from sing_backend.settings import SettingsError, load_settings


def test_defaults_are_local_mode_on_7099(tmp_path: Path):
    s = load_settings(environ={"HOME": str(tmp_path)})
    assert s.port == 7099 and s.mode == "local" and s.base_path == "/singularity"
    assert s.agents.count == 3 and s.agents.racks == 2


def test_toml_then_env_then_flags(tmp_path: Path):
    cfg = tmp_path / "sing.toml"
    cfg.write_text('port = 8000\nkill_grace_seconds = 9\n[agents]\ncount = 5\n')
    s = load_settings(cfg, environ={"SING_PORT": "8100", "SING_AGENTS__RACKS": "3"})
    assert (s.port, s.kill_grace_seconds, s.agents.count, s.agents.racks) == (8100, 9, 5, 3)
    s = load_settings(cfg, {"port": 8200, "data_dir": tmp_path / "d"}, environ={"SING_PORT": "8100"})
    assert s.port == 8200 and s.data_dir == (tmp_path / "d").resolve()


@pytest.mark.parametrize(("toml", "env", "fragment"), [
    ("port = 'x'\n", {}, "port"),
    ("", {"SING_AGENTS__COUNT": "0"}, "agents.count"),
    ("colour = 'red'\n", {}, "colour"),
    ("port = \n", {}, "not valid TOML"),
])
def test_bad_settings_name_the_setting(tmp_path: Path, toml: str, env: dict, fragment: str):
    cfg = tmp_path / "sing.toml"
    cfg.write_text(toml)
    with pytest.raises(SettingsError, match=fragment):
        load_settings(cfg, environ=env)


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize("url", ["not a url", "127.0.0.1:7201", "ftp://h:7201", "http://h:99999", "http://h:7201/api",
                                 "http://h:7201?x=1", "http://:7201"])
def test_an_advertise_url_other_backends_cannot_use_is_refused(url: str):
    # The other backends forward reads there and clients are told it leads: a typo must not start.
    with pytest.raises(SettingsError, match=r"^invalid settings: advertise_url: must be this backend's API root"):
        load_settings(overrides={"advertise_url": url}, environ={})


def test_an_advertise_url_is_kept_without_its_trailing_slash():
    for url, kept in (("http://10.0.0.5:7099", "http://10.0.0.5:7099"), ("https://sing.example.com/",
                                                                          "https://sing.example.com")):
        assert load_settings(overrides={"advertise_url": url}, environ={}).advertise_url == kept
