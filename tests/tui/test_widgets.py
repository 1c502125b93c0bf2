"""The table and the log view on their own, in a tiny app at 80x24."""

from __future__ import annotations

from textual.app import App, ComposeResult

from sing_tui.query import Filter
from sing_tui.widgets.log_view import LogView
from sing_tui.widgets.resource_table import Column, ResourceTable, ratio_key


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ResourceTable([Column("ID"), Column("STATE"), Column("INST", sort_key=ratio_key)], markable=True)


def shown(table: ResourceTable) -> list[str]:
    return [table.render_line(y).text.strip() for y in range(1, table.row_count + 1)]


async def test_table_diffs_by_key_filters_sorts_and_marks() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResourceTable)
        table.focus()
        rows = {f"r{i}": (f"req-{i}", "ACTIVE" if i % 2 else "PAUSED", f"{i}/{i}") for i in range(10)}
        assert table.set_rows(rows) == set(rows)
        assert table.set_rows(dict(rows)) == set()  # unchanged rows are not touched
        changed = dict(rows, r3=("req-3", "PAUSED", "0/3"))
        assert table.set_rows(changed) == {"r3"}
        await pilot.pause()
        assert "req-3" in shown(table)[3] and "PAUSED" in shown(table)[3]

        table.set_filter(Filter.parse("paused"))
        assert table.row_count == 6
        table.set_filter(Filter.parse("!paused"))
        assert table.row_count == 4
        table.set_filter(Filter())

        table.sort_by(2, reverse=True)  # numeric "running/wanted" sort
        assert table.keys[0] == "r9"
        await pilot.press("home", "space", "space")
        assert table.marks == {"r9", "r8"} and table.target_keys() == ["r9", "r8"]
        await pilot.press("ctrl+backslash")
        assert table.marks == set() and table.target_keys() == [table.cursor_key]

        table.move_to("r5")
        del changed["r5"]
        table.set_rows(changed)  # the row under the cursor went away: the cursor stays in range
        assert table.cursor_key is not None and table.row_count == 9

        # A few cells moving (a countdown) without resending every row: the others stay as they are.
        assert table.update_rows({"r1": ("req-1", "ACTIVE", "0/1"), "r2": changed["r2"]}) == {"r1"}
        assert table.row("r1") == ("req-1", "ACTIVE", "0/1") and table.row_count == 9
        table.set_filter(Filter.parse("0/1"))
        assert table.keys == ["r1"]


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LogView(max_lines=1000, sources=["v1#1", "v1#2"])


async def test_log_follow_pause_filter_highlight_wrap() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.query_one(LogView)
        log.focus()
        log.write_batch([(i % 2, f"line {i} {'ERROR' if i % 10 == 0 else 'ok'}") for i in range(100)])
        await pilot.pause()
        assert log.follow and log.scroll_y == log.max_scroll_y
        assert "line 99" in log.render_line(log.size.height - 1).text

        await pilot.press("pageup")  # scrolling up pauses follow and counts what arrives meanwhile
        assert not log.follow
        log.write_batch([(0, "late 1"), (1, "late 2")])
        assert log.new_lines == 2 and log.scroll_y < log.max_scroll_y
        log.go_bottom()
        assert log.follow and log.new_lines == 0

        log.set_filter(Filter.parse("error"))  # hide mode: only matching lines
        assert log.match_count == 10
        assert all("ERROR" in log.render_line(y).text for y in range(10))
        log.highlight_mode = True  # highlight mode: everything, n/N walk the matches
        assert log.next_match(1) and "ERROR" in log.lines[log._matches[log.current_match]]
        first = log.current_match
        log.next_match(1)
        assert log.current_match == (first + 1) % 10

        log.set_filter(Filter())
        log.write_batch([(0, "x" * 200)])
        log.wrap = True
        await pilot.pause()
        assert log.virtual_size.height > log.line_count  # the long line takes several rows
        assert log.plain_lines()[-1].startswith("v1#1 | xxx")


async def test_end_and_home_jump_at_once_and_end_follows_again() -> None:
    """End (the status line says "End to follow") once crashed the dashboard: the scrolling base class
    animated it, and following, set at the end, cut that animation short under Textual's animator."""
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.query_one(LogView)
        log.focus()
        log.write_lines([f"line {i}" for i in range(200)])
        await pilot.pause()
        for _ in range(3):
            await pilot.press("k", "k")
            assert not log.follow
            log.write_lines(["new"])
            await pilot.press("end")
            assert log.follow and log.scroll_y == log.max_scroll_y and log.new_lines == 0
            await pilot.pause(0.3)  # past where an animation of the scroll would have ended
            await pilot.press("home")
            assert not log.follow and log.scroll_y == 0
        assert app.is_running


async def test_a_followed_log_shows_its_last_line_above_a_horizontal_scrollbar() -> None:
    app = LogApp()
    async with app.run_test(size=(40, 10)) as pilot:
        log = app.query_one(LogView)
        log.write_lines([f"line {i} " + "x" * 60 for i in range(50)] + ["the last line"])
        await pilot.pause()
        rows = [strip.text for strip in app.screen._compositor.render_strips()]
        assert "the last line" in rows[-2] and "▍" in rows[-1]  # above the scrollbar, not under it
        assert log.follow and log.scroll_y == log.max_scroll_y


async def test_log_prunes_to_max_lines() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)):
        log = app.query_one(LogView)
        for batch in range(15):
            log.write_lines([f"b{batch} l{i}" for i in range(100)])
        assert log.line_count <= 1100 and log.lines[-1] == "b14 l99"
