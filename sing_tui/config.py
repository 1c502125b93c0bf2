"""TUI settings: defaults, then a TOML file, then `SING_URL`, then command-line flags.

The file (`$SING_TUI_CONFIG`, else `$XDG_CONFIG_HOME/sing/tui.toml`, else `~/.config/sing/tui.toml`)
may rebind any key by its binding id (listed on the `?` help screen):

    url = "http://sing.example.com:7099"    # or several: ["http://a:7099", "http://b:7099"]
    read_only = true
    refresh_seconds = 2
    theme = "textual-light"

    [keymap]
    "request.scale" = "S"
    "app.quit" = "ctrl+q"

    [log]
    poll_seconds = 0.25
    tail_kb = 64
    max_lines = 20000
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .client import DEFAULT_URL


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class TuiConfig:
    # One backend, or several separated by commas (a leader and its standbys): the dashboard uses the
    # first, and moves on to the next when the one in use stops answering.
    url: str = DEFAULT_URL
    read_only: bool = False
    refresh_seconds: float = 2.0
    max_backoff_seconds: float = 30.0
    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)
    log_poll_seconds: float = 0.25
    log_tail_bytes: int = 64 * 1024
    log_max_lines: int = 20_000
    path: Path | None = None  # the file it was read from, if any

    @property
    def urls(self) -> tuple[str, ...]:
        return split_urls(self.url)


def split_urls(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _check_urls(text: str, where: str) -> None:
    """Refuse, naming it, the first entry that is not an http(s) URL with a host."""
    for entry in split_urls(text):
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            listed = f" (in {text!r})" if "," in text else ""
            raise ConfigError(f"{where}: {entry!r} is not an http:// or https:// URL{listed}")


def default_path() -> Path:
    if os.environ.get("SING_TUI_CONFIG"):
        return Path(os.environ["SING_TUI_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "sing" / "tui.toml"


def _number(data: dict[str, Any], key: str, where: str, minimum: float) -> float | None:
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{where}{key}: must be a number >= {minimum}, got {value!r}")
    return float(value)


def load_config(path: Path | None = None, *, url: str | None = None, read_only: bool | None = None) -> TuiConfig:
    """Read the config file (missing is fine unless it was named explicitly) and apply overrides."""
    explicit = path is not None or bool(os.environ.get("SING_TUI_CONFIG"))
    path = path or default_path()
    cfg = TuiConfig()
    url_from = "url"
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        cfg = _apply(cfg, data, path)
        url_from = f"{path}: url"
    elif explicit:
        raise ConfigError(f"{path}: no such config file")
    if os.environ.get("SING_URL"):
        cfg, url_from = replace(cfg, url=os.environ["SING_URL"]), "SING_URL"
    if url:
        cfg, url_from = replace(cfg, url=url), "--url"
    if read_only:
        cfg = replace(cfg, read_only=True)
    _check_urls(cfg.url, url_from)
    return cfg


def _apply(cfg: TuiConfig, data: dict[str, Any], path: Path) -> TuiConfig:
    where = f"{path}: "
    known = {"url", "read_only", "refresh_seconds", "max_backoff_seconds", "theme", "keymap", "log"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    changes: dict[str, Any] = {"path": path}
    if "url" in data:
        url = data["url"]
        if isinstance(url, list) and url and all(isinstance(u, str) for u in url):
            url = ",".join(url)
        if not isinstance(url, str):
            raise ConfigError(f'{where}url: expected "http://host:port" or a list of them')
        changes["url"] = url
    if "read_only" in data:
        if not isinstance(data["read_only"], bool):
            raise ConfigError(f"{where}read_only: must be true or false")
        changes["read_only"] = data["read_only"]
    if "theme" in data:
        changes["theme"] = str(data["theme"])
    for key in ("refresh_seconds", "max_backoff_seconds"):
        value = _number(data, key, where, 0.1)
        if value is not None:
            changes[key] = value
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
        raise ConfigError(f'{where}[keymap]: expected "binding.id" = "key" pairs')
    changes["keymap"] = dict(keymap)
    log = data.get("log", {})
    if not isinstance(log, dict):
        raise ConfigError(f"{where}[log]: expected a table")
    for key, attr, minimum, scale in (("poll_seconds", "log_poll_seconds", 0.05, 1.0),
                                      ("tail_kb", "log_tail_bytes", 1, 1024.0),
                                      ("max_lines", "log_max_lines", 100, 1.0)):
        value = _number(log, key, f"{where}log.", minimum)
        if value is not None:
            changes[attr] = value * scale if attr == "log_poll_seconds" else int(value * scale)
    return replace(cfg, **changes)
