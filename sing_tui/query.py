"""What the operator types: `/` filters, `:` commands, and the values typed into action forms.

Pure parsing with reasons on failure (`ValueError` messages are shown in the form as they are).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

# ---- `/` filter


@dataclass(frozen=True)
class Filter:
    """A case-insensitive regex over a row's text; a leading `!` keeps the rows that do NOT match.

    An invalid regex is not an error: it is matched literally and `note` says so.
    """

    text: str = ""
    pattern: re.Pattern[str] | None = None
    invert: bool = False
    note: str = ""

    @classmethod
    def parse(cls, text: str) -> Filter:
        raw = text.strip()
        invert = raw.startswith("!")
        body = raw[1:] if invert else raw
        if not body:
            return cls(text=raw, invert=invert)
        note = ""
        try:
            pattern = re.compile(body, re.IGNORECASE)
        except re.error as exc:
            pattern = re.compile(re.escape(body), re.IGNORECASE)
            note = f"not a valid regex ({exc}); matching the text literally"
        return cls(text=raw, pattern=pattern, invert=invert, note=note)

    @property
    def active(self) -> bool:
        return self.pattern is not None

    def matches(self, text: str) -> bool:
        if self.pattern is None:
            return True
        return (self.pattern.search(text) is None) if self.invert else (self.pattern.search(text) is not None)

    def describe(self) -> str:
        if not self.active:
            return ""
        return f"{'not ' if self.invert else ''}/{self.text.lstrip('!')}/"


# ---- `:` commands

VIEWS = {
    "dash": "dashboard", "dashboard": "dashboard", "home": "dashboard", "state": "dashboard",
    "req": "requests", "reqs": "requests", "requests": "requests", "rq": "requests",
    "tasks": "tasks", "task": "task", "t": "tasks",
    "agents": "agents", "agent": "agents", "ag": "agents", "slaves": "agents", "nodes": "agents",
    "racks": "agents", "rack": "agents",
    "request": "request", "r": "request",
    "logs": "logs", "log": "logs",
    "help": "help", "h": "help",
    "q": "quit", "quit": "quit", "q!": "quit",
}
COMMAND_HELP = [
    (":dash", "cluster dashboard (counts, leader, pending tasks with reasons, failures)"),
    (":requests [type=T] [state=S] [owner=O] [/regex]", "all requests, filtered"),
    (":request ID", "one request"),
    (":tasks [/regex]", "active tasks"),
    (":task ID", "one task"),
    (":logs TASK_ID", "follow a task's stdout"),
    (":agents", "agents and racks"),
    (":help", "every key"),
    (":q", "quit"),
]


@dataclass(frozen=True)
class Command:
    view: str
    arg: str = ""
    params: dict[str, str] = field(default_factory=dict)
    filter: str = ""


class CommandError(ValueError):
    pass


def parse_command(text: str) -> Command:
    """`requests type=worker state=paused /web` -> Command("requests", params=..., filter="web")."""
    try:
        words = shlex.split(text.strip().removeprefix(":"))
    except ValueError as exc:
        raise CommandError(f"cannot parse the command: {exc}") from exc
    if not words:
        raise CommandError("empty command; try :requests, :tasks, :agents, :request ID, :dash")
    name, rest = words[0].lower(), words[1:]
    view = VIEWS.get(name)
    if view is None:
        close = sorted(k for k in VIEWS if k.startswith(name[:2]))
        hint = f" (did you mean {', '.join(':' + c for c in close[:4])}?)" if close else ""
        raise CommandError(f"unknown command :{name}{hint}")
    params: dict[str, str] = {}
    args: list[str] = []
    filt = ""
    for w in rest:
        if w.startswith("/") and len(w) > 1:
            filt = w[1:]
        elif "=" in w:
            k, _, v = w.partition("=")
            if not k or not v:
                raise CommandError(f"expected key=value, got {w!r}")
            params[k.lower()] = v
        else:
            args.append(w)
    if view in ("request", "task", "logs") and len(args) != 1:
        example = "my-request" if view == "request" else "TASK_ID"
        raise CommandError(f":{name} needs exactly one id, e.g. :{name} {example}")
    if view == "requests":
        from .model import REQUEST_FILTER_KEYS
        unknown = sorted(set(params) - set(REQUEST_FILTER_KEYS))
        if unknown:
            raise CommandError(f"unknown filter {', '.join(unknown)}; use {', '.join(REQUEST_FILTER_KEYS)}")
    elif params:
        raise CommandError(f":{name} takes no key=value filters")
    if view == "requests" and args:
        filt = filt or args[0]
    return Command(view=view, arg=args[0] if args and view in ("request", "task", "logs") else "",
                   params=params, filter=filt)


# ---- form values


def parse_instances(text: str, maximum: int | None = None) -> int:
    raw = text.strip()
    if not raw:
        raise ValueError("instances: enter a number")
    if not re.fullmatch(r"\d+", raw):
        raise ValueError(f"instances: {raw!r} is not a whole number")
    n = int(raw)
    if n < 1:
        raise ValueError("instances: must be at least 1 (pause the request to stop every task)")
    if maximum is not None and n > maximum:
        raise ValueError(f"instances: {n} is above this request's maxScale {maximum}")
    return n


def parse_args(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"arguments: {exc} (quote with ' or \")") from exc


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_env(text: str) -> dict[str, str]:
    """`A=1 B="two words"` -> {"A": "1", "B": "two words"}."""
    out: dict[str, str] = {}
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"environment: {exc}") from exc
    for w in words:
        name, eq, value = w.partition("=")
        if not eq:
            raise ValueError(f"environment: {w!r} is not NAME=value")
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"environment: {name!r} is not a valid variable name")
        out[name] = value
    return out


_RUN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def parse_run_id(text: str) -> str | None:
    raw = text.strip()
    if not raw:
        return None
    if not _RUN_ID.fullmatch(raw):
        raise ValueError("run id: letters, digits and _ . : - only (at most 100)")
    return raw


def parse_duration(text: str) -> int | None:
    """`30m`, `2h`, `1d`, `90s` or empty -> milliseconds or None."""
    raw = text.strip().lower()
    if not raw:
        return None
    m = re.fullmatch(r"(\d+)\s*([smhd]?)", raw)
    if not m:
        raise ValueError(f"duration: {text!r} is not like 30m, 2h, 1d")
    n = int(m.group(1))
    if n <= 0:
        raise ValueError("duration: must be more than 0")
    return n * {"s": 1, "": 60, "m": 60, "h": 3600, "d": 86400}[m.group(2)] * 1000
