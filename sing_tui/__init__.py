"""Sing's terminal dashboard (Textual). Its only door to the backend is `sing_tui.client`."""
