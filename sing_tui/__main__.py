"""`python -m sing_tui` (and `sing tui`): the terminal dashboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, load_config

VIEWS = ("dashboard", "requests", "tasks", "agents")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help="backend URL, or several comma-separated (a leader and its standbys: the next is "
                             "used when one stops answering); default $SING_URL or http://127.0.0.1:7099")
    parser.add_argument("--read-only", action="store_true", help="hide every action that changes anything")
    parser.add_argument("--config", type=Path, default=None,
                        help="TUI config file (default ~/.config/sing/tui.toml): keymap, url, refresh")
    parser.add_argument("--view", choices=VIEWS, default="dashboard", help="the view to start on")


def run_tui(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, url=args.url, read_only=args.read_only)
    except ConfigError as exc:
        print(f"sing tui: {exc}", file=sys.stderr)
        return 2
    from .app import run  # Textual is imported only when the TUI really starts
    return run(config, start_view=args.view)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sing tui", description="Sing's terminal dashboard")
    add_arguments(parser)
    return run_tui(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
