"""LogView: a follow-mode log pane on the line API (plain strings, only visible lines rendered).

Textual's `Log` cannot wrap or highlight; `RichLog` costs ~2 ms a line. This keeps `Log`'s model
(a list of strings, lines rendered on demand) and adds what operators ask for: wrap, a filter that
either hides non-matching lines or highlights matches with n/N, follow that pauses when scrolled up
and counts the lines that arrived since, and per-source prefixes for the all-instances view.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..query import Filter

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
# Colours of the task prefixes in the all-instances view; each reads on dark and light themes.
SOURCE_COLOURS = ("cyan", "magenta", "green", "yellow", "bright_blue", "bright_red", "bright_cyan",
                  "bright_magenta", "bright_green", "orange3")


class LogView(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LogView {
        background: $surface;
        height: 1fr;
        scrollbar-size-vertical: 1;
        & > .log-view--match { background: $warning 40%; text-style: bold; }
        & > .log-view--current { background: $accent 60%; text-style: bold; }
        & > .log-view--marker { color: $text-muted; text-style: italic; }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"log-view--match", "log-view--current", "log-view--marker"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_lines(-1)", "Up", show=False, id="log.up"),
        Binding("down,j", "scroll_lines(1)", "Down", show=False, id="log.down"),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False, id="log.page_up"),
        Binding("pagedown,ctrl+f,space", "page(1)", "Page down", show=False, id="log.page_down"),
        # Home and End of the scrolling base class animate the scroll, and following (set when an
        # animated scroll reaches the end) then cut the animation short, which crashed Textual's animator.
        Binding("home,ctrl+home", "top", "Top", show=False, id="log.top"),
        Binding("end,ctrl+end", "bottom", "Bottom (follow)", show=False, id="log.bottom"),
        Binding("left", "scroll_cols(-8)", "Left", show=False, id="log.left"),
        Binding("right", "scroll_cols(8)", "Right", show=False, id="log.right"),
    ]

    follow: reactive[bool] = reactive(True, init=False)
    wrap: reactive[bool] = reactive(False, init=False)
    highlight_mode: reactive[bool] = reactive(False, init=False)

    class StatusChanged(Message):
        """Follow, pending-line count, match position or line count changed."""

        def __init__(self, log: LogView) -> None:
            super().__init__()
            self.log = log

        @property
        def control(self) -> LogView:
            return self.log

    def __init__(self, *, max_lines: int = 20_000, sources: Sequence[str] = (), name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_lines = max_lines
        self.sources = list(sources)
        self._prefix_width = max((cell_len(s) for s in self.sources), default=0)
        self._lines: list[tuple[int, str]] = []  # (source index or -1 for a marker line, text)
        self._marker_count = 0  # marker lines among _lines
        self._rows: list[tuple[int, int]] = []  # display rows: (line index, first char)
        self._max_width = 0
        self.filter = Filter()
        self.new_lines = 0  # arrived while follow was paused
        self._matches: list[int] = []  # line indices matching the filter (highlight mode)
        self.current_match = -1
        self._end_settling = False  # a second look at the end is queued (see _scroll_to_end)
        self._programmatic = False

    # ---- writing
    @property
    def line_count(self) -> int:
        return len(self._lines)

    @property
    def output_line_count(self) -> int:
        """The lines of the log itself, without the view's marker lines."""
        return len(self._lines) - self._marker_count

    @property
    def lines(self) -> list[str]:
        return [t for _, t in self._lines]

    def plain_lines(self) -> list[str]:
        """What "save" writes: every line, with its task prefix in the all-instances view."""
        out = []
        for src, text in self._lines:
            prefix = f"{self.sources[src]} | " if src >= 0 and self.sources else ""
            out.append(prefix + text)
        return out

    def write_lines(self, lines: Iterable[str], source: int = 0) -> None:
        self.write_batch([(source, line) for line in lines])

    def write_marker(self, text: str) -> None:
        self.write_batch([(-1, text)])

    def write_batch(self, batch: Sequence[tuple[int, str]]) -> None:
        """Append lines (one render for the whole batch)."""
        if not batch:
            return
        clean = [(src, _CONTROL.sub("�", text.expandtabs())) for src, text in batch]
        first = len(self._lines)
        self._lines.extend(clean)
        self._marker_count += sum(1 for src, _ in clean if src < 0)
        added_rows = 0
        for i in range(first, len(self._lines)):
            if self._visible(i):
                added_rows += self._add_rows(i)
                if self.highlight_mode and self._is_match(i):
                    self._matches.append(i)
        if len(self._lines) > self.max_lines + self.max_lines // 10:
            self._prune()
        if not self.follow:
            self.new_lines += sum(1 for i in range(first, len(self._lines)) if self._visible(i))
        self._update_virtual_size()
        if self.follow:
            self._scroll_to_end()
        self.refresh()
        self.post_message(self.StatusChanged(self))

    def clear(self) -> None:
        self._lines.clear()
        self._marker_count = 0
        self._rows.clear()
        self._matches.clear()
        self._max_width = 0
        self.new_lines = 0
        self.current_match = -1
        self._update_virtual_size()
        self.refresh()
        self.post_message(self.StatusChanged(self))

    def _prune(self) -> None:
        """Drop the oldest lines in one go (cheaper than trimming on every write)."""
        drop = len(self._lines) - self.max_lines
        self._marker_count -= sum(1 for src, _ in self._lines[:drop] if src < 0)
        del self._lines[:drop]
        before = len(self._rows)
        self._rebuild()
        if not self.follow:
            self._set_scroll_y(max(0, self.scroll_y - (before - len(self._rows))))

    # ---- filter and modes
    def set_filter(self, filt: Filter) -> None:
        self.filter = filt
        self.current_match = -1
        self._rebuild()
        if self.follow:
            self._scroll_to_end()
        self.post_message(self.StatusChanged(self))

    def watch_wrap(self) -> None:
        self._rebuild()
        if self.follow:
            self._scroll_to_end()

    def watch_highlight_mode(self) -> None:
        self.current_match = -1
        self._rebuild()
        if self.follow:
            self._scroll_to_end()
        self.post_message(self.StatusChanged(self))

    def _visible(self, i: int) -> bool:
        src, text = self._lines[i]
        if src < 0 or not self.filter.active or self.highlight_mode:
            return True
        return self.filter.matches(text)

    def _is_match(self, i: int) -> bool:
        src, text = self._lines[i]
        return src >= 0 and self.filter.active and self.filter.matches(text)

    @property
    def match_count(self) -> int:
        if not self.filter.active:
            return 0
        if self.highlight_mode:
            return len(self._matches)
        return sum(1 for r in self._rows if r[1] == 0 and self._lines[r[0]][0] >= 0)

    def _prefix(self, src: int) -> str:
        if not self.sources or src < 0:
            return ""
        return self.sources[src].ljust(self._prefix_width) + " │ "

    def _add_rows(self, i: int) -> int:
        src, text = self._lines[i]
        width = cell_len(self._prefix(src)) + cell_len(text)
        self._max_width = max(self._max_width, width)
        if not self.wrap:
            self._rows.append((i, 0))
            return 1
        room = max(10, self.scrollable_content_region.width - cell_len(self._prefix(src)))
        count = max(1, -(-len(text) // room))
        self._rows.extend((i, k * room) for k in range(count))
        return count

    def _rebuild(self) -> None:
        self._rows = []
        self._matches = []
        self._max_width = 0
        for i in range(len(self._lines)):
            if self._visible(i):
                self._add_rows(i)
                if self.highlight_mode and self._is_match(i):
                    self._matches.append(i)
        self._update_virtual_size()
        self.refresh()

    def _update_virtual_size(self) -> None:
        width = self.scrollable_content_region.width if self.wrap else self._max_width
        self.virtual_size = Size(width, len(self._rows))

    # ---- follow
    def _set_scroll_y(self, y: float) -> None:
        self._programmatic = True
        try:
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
        finally:
            self._programmatic = False

    def _scroll_to_end(self) -> None:
        self._set_scroll_y(max(0, len(self._rows) - self.scrollable_content_region.height))
        if not self._end_settling:
            # A line wider than the view brings a horizontal scrollbar, which takes the bottom row only once
            # the layout is redone: the end is taken again then, or the last line would sit under it.
            self._end_settling = True
            self.call_after_refresh(self._settle_end)

    def _settle_end(self) -> None:
        self._end_settling = False
        if self.follow:
            self._set_scroll_y(self.max_scroll_y)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._programmatic:
            return
        at_end = new >= self.max_scroll_y
        if at_end and not self.follow:
            self.follow = True
        elif not at_end and new < old and self.follow:
            self.follow = False

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.new_lines = 0
            self._scroll_to_end()
        self.post_message(self.StatusChanged(self))

    def on_resize(self, event: events.Resize) -> None:
        if self.wrap:
            self._rebuild()
        if self.follow:
            self._scroll_to_end()

    # ---- navigation
    def action_scroll_lines(self, delta: int) -> None:
        self.scroll_to(y=self.scroll_y + delta, animate=False)

    def action_page(self, direction: int) -> None:
        self.scroll_to(y=self.scroll_y + direction * max(1, self.scrollable_content_region.height - 1),
                       animate=False)

    def action_scroll_cols(self, delta: int) -> None:
        self.scroll_to(x=self.scroll_x + delta, animate=False)

    def action_top(self) -> None:
        self.go_top()

    def action_bottom(self) -> None:
        self.go_bottom()

    def go_top(self) -> None:
        self.follow = False
        self._set_scroll_y(0)
        self.post_message(self.StatusChanged(self))

    def go_bottom(self) -> None:
        self.follow = True
        self._scroll_to_end()

    def next_match(self, direction: int = 1) -> bool:
        """n / N: move to the next (previous) matching line; False if there is none."""
        if not self._matches:
            return False
        if self.current_match < 0:
            top_line = self._rows[int(self.scroll_y)][0] if self._rows else 0
            after = [k for k, i in enumerate(self._matches) if (i >= top_line if direction > 0 else i <= top_line)]
            index = (after[0] if direction > 0 else after[-1]) if after else (0 if direction > 0 else -1)
        else:
            index = self.current_match + direction
        self.current_match = index % len(self._matches)
        line = self._matches[self.current_match]
        row = next((r for r, (i, _) in enumerate(self._rows) if i == line), 0)
        self.follow = False
        self._set_scroll_y(max(0, row - self.scrollable_content_region.height // 2))
        self.refresh()
        self.post_message(self.StatusChanged(self))
        return True

    # ---- rendering
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        row = int(self.scroll_y) + y
        if row >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        line_index, start = self._rows[row]
        src, text = self._lines[line_index]
        base = self.rich_style
        if src < 0:
            style = base + self.get_component_rich_style("log-view--marker")
            return Strip([Segment(text, style)]).crop_extend(0, width, base)
        segs: list[Segment] = []
        prefix = self._prefix(src)
        if prefix:
            colour = SOURCE_COLOURS[src % len(SOURCE_COLOURS)]
            segs.append(Segment(prefix if start == 0 else " " * cell_len(prefix), base + Style(color=colour)))
        if self.wrap:
            room = max(10, width - cell_len(prefix))
            piece = text[start:start + room]
            offset = start
        else:
            piece, offset = text, 0
        if self.filter.active and self.highlight_mode and self._is_match(line_index):
            current = self.current_match >= 0 and self._matches[self.current_match] == line_index
            mark = self.get_component_rich_style("log-view--current" if current else "log-view--match")
            segs.extend(_highlighted(piece, offset, text, self.filter, base, base + mark))
        else:
            segs.append(Segment(piece, base))
        strip = Strip(segs)
        if self.wrap:
            return strip.crop_extend(0, width, base)
        scroll_x = int(self.scroll_x)
        return strip.crop_extend(scroll_x, scroll_x + width, base)


def _highlighted(piece: str, offset: int, text: str, filt: Filter, base: Style, mark: Style) -> list[Segment]:
    """Split `piece` (text[offset:offset+len(piece)]) into plain and highlighted segments."""
    assert filt.pattern is not None
    if filt.invert:
        return [Segment(piece, mark)]
    segs: list[Segment] = []
    pos = 0
    end = offset + len(piece)
    for m in filt.pattern.finditer(text):
        a, b = max(m.start(), offset), min(m.end(), end)
        if b <= a:
            if m.start() >= end:
                break
            continue
        if a - offset > pos:
            segs.append(Segment(piece[pos:a - offset], base))
        segs.append(Segment(piece[a - offset:b - offset], mark))
        pos = b - offset
    if pos < len(piece):
        segs.append(Segment(piece[pos:], base))
    return segs
