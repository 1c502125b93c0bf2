"""TUI settings: defaults, then a TOML file, then `SING_URL`, then command-line flags.

The file (`$SING_TUI_CONFIG`, else `$XDG_CONFIG_HOME/sing/tui.toml`, else `~/.config/sing/tui.toml`)
may rebind any key by its binding id (listed on the `?` help screen):

    url = "http://sing.example.com:7099"
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

from .client import DEFAULT_URL


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class TuiConfig:
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
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        cfg = _apply(cfg, data, path)
    elif explicit:
        raise ConfigError(f"{path}: no such config file")
    if os.environ.get("SING_URL"):
        cfg = replace(cfg, url=os.environ["SING_URL"])
    if url:
        cfg = replace(cfg, url=url)
    if read_only:
        cfg = replace(cfg, read_only=True)
    if not cfg.url.startswith(("http://", "https://")):
        raise ConfigError(f"url: {cfg.url!r} must start with http:// or https://")
    return cfg


def _apply(cfg: TuiConfig, data: dict[str, Any], path: Path) -> TuiConfig:
    where = f"{path}: "
    known = {"url", "read_only", "refresh_seconds", "max_backoff_seconds", "theme", "keymap", "log"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    changes: dict[str, Any] = {"path": path}
    if "url" in data:
        changes["url"] = str(data["url"])
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
