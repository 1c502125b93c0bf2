"""The API client and the plain-data modules must not import Textual (the UI reaches the backend only
through them, and they stay usable and testable without a terminal)."""

from __future__ import annotations

import subprocess
import sys

import pytest

NO_TEXTUAL = ["sing_tui.client", "sing_tui.model", "sing_tui.query", "sing_tui.logtail", "sing_tui.archive",
              "sing_tui.config", "sing_tui.connection", "sing_tui.__main__"]


@pytest.mark.parametrize("module", NO_TEXTUAL)
def test_module_does_not_import_textual(module: str) -> None:
    code = (f"import sys, {module}; bad = sorted(m for m in sys.modules if m == 'textual' or "
            "m.startswith('textual.')); print(','.join(bad)); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"{module} imports {result.stdout.strip()} {result.stderr}"


def test_only_the_client_talks_http() -> None:
    """Screens and widgets never use httpx directly: every call goes through SingClient."""
    from pathlib import Path

    import sing_tui
    root = Path(sing_tui.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name not in ("client.py", "launcher.py", "screenshots.py") and "httpx" in p.read_text()]
    assert offenders == []
