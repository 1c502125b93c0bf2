"""ResourceTable: a keyed, virtual table for thousands of rows.

Textual's DataTable measures and lays out every row up front (about 1.6 s of first paint for 5,000
rows), so this table uses the line API instead: it keeps plain string tuples keyed by id, renders only
the rows on screen, and caches each rendered row until that row's cells change. A refresh is a diff
by key: unchanged rows keep their cached strips, so a 2-second poll re-renders only what changed.
Filter, sort and marks are the table's own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..query import Filter

Row = tuple[str, ...]
RowPredicate = Callable[[str, Row], bool]


@dataclass(frozen=True)
class Column:
    label: str
    width: int | None = None  # None: sized to the content, capped by max_width
    max_width: int = 40
    align_right: bool = False
    style: Callable[[str], str] | None = None  # rich style for a cell's value (e.g. a state's colour)
    sort_key: Callable[[str], Any] | None = None
    # Takes the room there is to spare, up to its whole content (max_width caps it only where room is short).
    grow: bool = False


def ratio_key(cell: str) -> tuple[float, float]:
    """Sort "2/3" and "0.5/4" cells by their first number, then the second."""
    a, _, b = cell.partition("/")
    try:
        return float(a), float(b or 0)
    except ValueError:
        return (-1.0, -1.0)


def number_key(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return -1.0


_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def size_key(cell: str) -> float:
    """"86 B" < "1.2 KB" < "3.0 MB"."""
    num, _, unit = cell.partition(" ")
    try:
        return float(num) * _SIZE_UNITS.get(unit, 1)
    except ValueError:
        return -1.0


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def age_key(cell: str) -> float:
    """"5s" < "3m" < "2h05m" < "4d1h"."""
    total, num = 0.0, ""
    for ch in cell:
        if ch.isdigit():
            num += ch
        elif ch in _AGE_UNITS and num:
            total += int(num) * _AGE_UNITS[ch]
            num = ""
    return total if cell not in ("-", "") else float("inf")


class ResourceTable(ScrollView, can_focus=True):
    """A table of rows keyed by id, with a fixed header, cursor, marks, filter and sort."""

    DEFAULT_CSS = """
    ResourceTable {
        background: $surface;
        scrollbar-size-vertical: 1;
        height: 1fr;
        & > .resource-table--header { text-style: bold; color: $text-accent; background: $panel; }
        & > .resource-table--cursor { background: $block-cursor-blurred-background; }
        & > .resource-table--marked { color: $text-warning; text-style: bold; }
        & > .resource-table--empty { color: $text-muted; text-style: italic; }
        &:focus > .resource-table--cursor {
            background: $block-cursor-background; color: $block-cursor-foreground;
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "resource-table--header", "resource-table--cursor", "resource-table--marked", "resource-table--empty",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="table.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="table.down"),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False, id="table.page_up"),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False, id="table.page_down"),
        Binding("home,g", "first", "First row", show=False, id="table.first"),
        Binding("end,G", "last", "Last row", show=False, id="table.last"),
        Binding("enter", "select", "Open", id="table.open"),
        Binding("space", "mark", "Mark", show=False, id="table.mark"),
        Binding("ctrl+backslash", "clear_marks", "Clear marks", show=False, id="table.clear_marks"),
        Binding("o", "sort_next", "Sort by next column", show=False, id="table.sort"),
        Binding("O", "sort_reverse", "Reverse sort", show=False, id="table.sort_reverse"),
    ]

    cursor: reactive[int] = reactive(0, init=False, always_update=True)

    class Selected(Message):
        """Enter (or a click on the selected row)."""

        def __init__(self, table: ResourceTable, key: str, row: Row) -> None:
            super().__init__()
            self.table = table
            self.key = key
            self.row = row

        @property
        def control(self) -> ResourceTable:
            return self.table

    class Highlighted(Message):
        """The cursor moved to another row."""

        def __init__(self, table: ResourceTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> ResourceTable:
            return self.table

    class Changed(Message):
        """The shown rows, marks or sort changed (for the status line)."""

        def __init__(self, table: ResourceTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> ResourceTable:
            return self.table

    def __init__(self, columns: Iterable[Column], *, markable: bool = False, empty_text: str = "nothing here",
                 filtered_text: str = "no row matches the filter", name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self.markable = markable
        self.empty_text = empty_text
        self.filtered_text = filtered_text  # shown when there are rows but the filter hides every one
        self._rows: dict[str, Row] = {}
        self._text: dict[str, str] = {}  # the row's cells joined, what `/` filters match
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self.marks: set[str] = set()
        self.filter = Filter()
        self.predicate: RowPredicate | None = None
        self.sort_column: int | None = None
        self.sort_reverse = False
        self._widths: list[int] = [c.width or cell_len(c.label) for c in self.columns]
        self._cache: LRUCache[tuple[str, bool, bool], Strip] = LRUCache(512)
        self._header_cache: Strip | None = None
        self._fitted: dict[int, list[int]] = {}
        self._styles: dict[str, Style] = {}  # computed once per style change, not once per line
        self.loaded = False  # false until the first set_rows: tells "loading" from "empty"

    # ---- data
    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def total_count(self) -> int:
        return len(self._rows)

    @property
    def keys(self) -> list[str]:
        return list(self._order)

    def row(self, key: str) -> Row | None:
        return self._rows.get(key)

    @property
    def cursor_key(self) -> str | None:
        if 0 <= self.cursor < len(self._order):
            return self._order[self.cursor]
        return None

    def target_keys(self) -> list[str]:
        """What an action applies to: the marked rows still shown, else the row under the cursor."""
        marked = [k for k in self._order if k in self.marks] if self.marks else []  # no scan on a cursor move
        if marked:
            return marked
        return [self.cursor_key] if self.cursor_key else []

    def set_rows(self, rows: Mapping[str, Row]) -> set[str]:
        """Replace the table's content by diffing on keys; returns the keys added or changed."""
        old = self._rows
        changed = {k for k, v in rows.items() if old.get(k) != v}
        removed = old.keys() - rows.keys()
        if not self.loaded:
            self.loaded = True
            self.refresh()
        if not changed and not removed:
            return changed
        self._rows = dict(rows)
        for k in changed:
            self._text[k] = " ".join(rows[k])
            self._discard(k)
        for k in removed:
            self._text.pop(k, None)
            self._discard(k)
            self.marks.discard(k)
        self._measure(changed, bool(removed))
        self._reorder()
        return changed

    def update_rows(self, rows: Mapping[str, Row]) -> set[str]:
        """Change (or add) only these rows and keep the others; returns the keys that changed."""
        changed = {k for k, v in rows.items() if self._rows.get(k) != v}
        if not changed:
            return changed
        for k in changed:
            self._rows[k] = rows[k]
            self._text[k] = " ".join(rows[k])
            self._discard(k)
        self._measure(changed, False)
        self._reorder()
        return changed

    def clear_rows(self) -> None:
        self.set_rows({})

    def _discard(self, key: str) -> None:
        for cursor in (False, True):
            for marked in (False, True):
                self._cache.discard((key, cursor, marked))

    def _measure(self, changed: set[str], removed: bool) -> None:
        """Column widths fit the content (capped); only grows on change, refits when rows go away."""
        rows = self._rows.values() if removed or len(changed) == len(self._rows) else \
            (self._rows[k] for k in changed)
        widths = [c.width or cell_len(c.label) for c in self.columns] if removed else list(self._widths)
        for row in rows:
            for i, cell in enumerate(row):
                col = self.columns[i]
                if col.width is None:
                    # A growing column keeps its whole width here; _col_widths caps it to fit.
                    w = cell_len(cell) if col.grow else min(cell_len(cell), col.max_width)
                    if w > widths[i]:
                        widths[i] = w
        if widths != self._widths:
            self._widths = widths
            self._cache.clear()
            self._fitted.clear()
            self._header_cache = None

    def set_filter(self, filt: Filter, predicate: RowPredicate | None = None) -> None:
        self.filter = filt
        self.predicate = predicate
        self._reorder()

    def set_predicate(self, predicate: RowPredicate | None) -> None:
        self.predicate = predicate
        self._reorder()

    def sort_by(self, column: int | None, reverse: bool = False) -> None:
        self.sort_column = column
        self.sort_reverse = reverse
        self._header_cache = None
        self._reorder()

    def _reorder(self) -> None:
        current = self.cursor_key
        keys: Iterable[str] = self._rows.keys()
        if self.filter.pattern is not None:
            # The hot path of typing in `/` over thousands of rows: no method call per row.
            search, text = self.filter.pattern.search, self._text
            if self.filter.invert:
                keys = [k for k in keys if search(text[k]) is None]
            else:
                keys = [k for k in keys if search(text[k]) is not None]
        if self.predicate is not None:
            pred, rows = self.predicate, self._rows
            keys = [k for k in keys if pred(k, rows[k])]
        keys = list(keys)
        if self.sort_column is not None:
            col = self.sort_column
            fn = self.columns[col].sort_key or str.lower
            rows = self._rows
            keys.sort(key=lambda k: fn(rows[k][col]), reverse=self.sort_reverse)
        self._order = keys
        self._index = {k: i for i, k in enumerate(keys)}
        size = Size(0, len(keys) + 1)  # never scrolls sideways: see _col_widths
        if size != self.virtual_size:
            self.virtual_size = size
        if current is not None and current in self._index:
            self.cursor = self._index[current]
        else:
            self.cursor = min(self.cursor, max(0, len(keys) - 1))
        self.refresh()
        self.post_message(self.Changed(self))

    def move_to(self, key: str) -> bool:
        if key in self._index:
            self.cursor = self._index[key]
            return True
        return False

    # ---- geometry
    def _col_widths(self, width: int) -> list[int]:
        """Fit the columns to the screen: the widest shrink first (cells end in "…"); spare room goes to
        the growing columns (up to their whole content), then to the last column unless it is aligned
        right (a number stays by its neighbours, the rest is left empty). The table never scrolls
        sideways, which matters at 80 columns."""
        cached = self._fitted.get(width)
        if cached is not None:
            return cached
        natural = self._widths
        widths = [min(w, c.max_width) if c.grow else w for w, c in zip(natural, self.columns, strict=True)]
        room = width - 2 - (len(widths) - 1)
        floors = [c.width or min(cell_len(c.label), 6) for c in self.columns]
        excess = sum(widths) - room
        while excess > 0:
            candidates = [i for i, w in enumerate(widths) if w > floors[i] and self.columns[i].width is None]
            if not candidates:
                break
            widest = max(candidates, key=lambda i: widths[i])
            others = [widths[i] for i in candidates if i != widest]
            step = max(1, min(excess, widths[widest] - max(max(others, default=0), floors[widest])))
            widths[widest] -= step
            excess -= step
        for i, col in enumerate(self.columns):
            if col.grow and excess < 0:
                extra = min(-excess, natural[i] - widths[i])
                widths[i] += extra
                excess += extra
        if excess < 0 and widths and not self.columns[-1].align_right:
            widths[-1] -= excess
        self._fitted[width] = widths
        return widths

    def watch_cursor(self, old: int, new: int) -> None:
        if self._order:
            clamped = max(0, min(new, len(self._order) - 1))
            if clamped != new:
                self.cursor = clamped
                return
        if old != new or not self._order:
            self.post_message(self.Highlighted(self, self.cursor_key))
        for index in (old, new):
            if 0 <= index < len(self._order):
                self.refresh_line(index + 1 - self._top() + int(self.scroll_y))
        self._scroll_cursor_into_view()

    def _top(self) -> int:
        """The first row shown; clamped so a stale scroll offset never leaves rows hidden above."""
        visible = max(1, self.scrollable_content_region.height - 1)
        return max(0, min(int(self.scroll_y), len(self._order) - visible))

    def _scroll_cursor_into_view(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = self._top()
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True, force=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True, force=True)

    def on_resize(self, event: events.Resize) -> None:
        self._cache.clear()
        self._fitted.clear()
        self._header_cache = None
        self._scroll_cursor_into_view()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()
        self._styles.clear()
        self._header_cache = None

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self.rich_style if name == "base" else self.get_component_rich_style(name)
            self._styles[name] = style
        return style

    # ---- rendering
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_y = self._top()
        full = width
        if y == 0:
            strip = self._header(full)
        else:
            index = scroll_y + y - 1
            if not self._order and y == 1:
                text = "loading…" if not self.loaded else self.filtered_text if self._rows else self.empty_text
                style = self._style("resource-table--empty")
                strip = Strip([Segment(set_cell_size(f"  {text}", full), style)])
            elif index >= len(self._order):
                return Strip.blank(width, self._style("base"))
            else:
                strip = self._row_strip(self._order[index], index == self.cursor, full)
        return strip.crop_extend(0, width, self._style("base"))

    def _header(self, full: int) -> Strip:
        if self._header_cache is not None and self._header_cache.cell_length == full:
            return self._header_cache
        style = self._style("resource-table--header")
        segs = [Segment("  ", style)]
        for i, (col, w) in enumerate(zip(self.columns, self._col_widths(full), strict=True)):
            label = col.label
            if i == self.sort_column:
                label += " ▼" if self.sort_reverse else " ▲"
            text = set_cell_size(label, w)
            if col.align_right:
                text = label[:w].rjust(w)
            segs.append(Segment(text, style))
            if i < len(self.columns) - 1:
                segs.append(Segment(" ", style))
        self._header_cache = Strip(segs).extend_cell_length(full, style)
        return self._header_cache

    def _row_strip(self, key: str, is_cursor: bool, full: int) -> Strip:
        marked = key in self.marks
        cache_key = (key, is_cursor, marked)
        cached = self._cache.get(cache_key)
        if cached is not None and cached.cell_length == full:
            return cached
        base = self._style("base")
        if marked:
            base = base + self._style("resource-table--marked")
        if is_cursor:
            base = base + self._style("resource-table--cursor")
        segs = [Segment("✓ " if marked else "  ", base)]
        row = self._rows[key]
        for i, (col, w) in enumerate(zip(self.columns, self._col_widths(full), strict=True)):
            cell = row[i] if i < len(row) else ""
            text = cell.rjust(w) if col.align_right and cell_len(cell) <= w else set_cell_size(cell, w)
            if cell_len(cell) > w and w > 1:
                text = set_cell_size(cell, w - 1) + "…"
            style = base
            if col.style is not None and not is_cursor:
                extra = col.style(cell)
                if extra:
                    style = base + Style.parse(extra)
            segs.append(Segment(text, style))
            if i < len(self.columns) - 1:
                segs.append(Segment(" ", base))
        strip = Strip(segs).extend_cell_length(full, base)
        self._cache[cache_key] = strip
        return strip

    # ---- actions
    def action_cursor(self, delta: int) -> None:
        if self._order:
            self.cursor = max(0, min(len(self._order) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.scrollable_content_region.height - 2))

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = max(0, len(self._order) - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key, self._rows[key]))

    def action_mark(self) -> None:
        key = self.cursor_key
        if key is None or not self.markable:
            return
        if key in self.marks:
            self.marks.discard(key)
        else:
            self.marks.add(key)
        self._discard(key)
        self.refresh()
        self.action_cursor(1)
        self.post_message(self.Changed(self))

    def action_clear_marks(self) -> None:
        if self.marks:
            for k in self.marks:
                self._discard(k)
            self.marks.clear()
            self.refresh()
            self.post_message(self.Changed(self))

    def action_sort_next(self) -> None:
        col = 0 if self.sort_column is None else (self.sort_column + 1) % len(self.columns)
        self.sort_by(col, False)

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort_column if self.sort_column is not None else 0, not self.sort_reverse)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("mark", "clear_marks") and not self.markable:
            return False
        return True

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            x = event.x - 2
            for i, w in enumerate(self._col_widths(self.scrollable_content_region.width)):
                if x < w + 1:
                    self.sort_by(i, not self.sort_reverse if self.sort_column == i else False)
                    return
                x -= w + 1
            return
        index = self._top() + event.y - 1
        if 0 <= index < len(self._order):
            if index == self.cursor and event.chain >= 2:
                self.action_select()
            self.cursor = index
