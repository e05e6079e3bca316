"""What client commands print: tables for people (rich, imported only when one is drawn),
JSON for scripts (`--json`), errors on stderr with the API's message and details."""

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def when(value: str | None, zone: str | None = None) -> str:
    """A time of the API (ISO 8601, UTC) as people read it, its zone said once:
    `2026-12-07 05:30:00 UTC`, or `2026-12-07 06:30 Europe/Paris (05:30 UTC)` in a zone."""
    if not value:
        return "-"
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(value).astimezone(UTC)
    if not zone or zone == "UTC":
        return f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    from zoneinfo import ZoneInfo

    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} {zone} ({moment:%H:%M} UTC)"


def moment(name: str) -> Callable[[dict[str, Any]], Any]:
    """A column of times in UTC, to the second (its header says UTC once)."""

    def read(row: dict[str, Any]) -> Any:
        value = row.get(name)
        return when(value)[:-4] if value else "-"

    return read


def field(name: str, width: int | None = None) -> Callable[[dict[str, Any]], Any]:
    """A column reading one field (times cut to the second)."""

    def read(row: dict[str, Any]) -> Any:
        value = row.get(name)
        if isinstance(value, str) and width is not None:
            return value[:width]
        return value

    return read


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *,
          title: str | None = None) -> None:  # fmt: skip
    """Rows as a table on stdout; wide enough never to wrap when piped."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 400,
                      highlight=False)  # fmt: skip
    grid = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False)
    for header, _ in columns:
        grid.add_column(header, overflow="fold", no_wrap=not sys.stdout.isatty())
    for row in rows:
        grid.add_row(*(text(read(row)) for _, read in columns))
    console.print(grid)


def text(value: Any) -> str:
    from rich.markup import escape

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return escape(", ".join(map(str, value)))
    if isinstance(value, dict):
        return escape(json.dumps(value, ensure_ascii=False))
    return escape(str(value))


def listing(data: Any, rows: Sequence[dict[str, Any]], columns: Sequence[Column], *,
            as_json: bool, title: str | None = None, empty: str = "nothing") -> None:  # fmt: skip
    """A listing: its JSON answer as it came, or a table of its rows."""
    if as_json:
        emit_json(data)
    elif rows:
        table(rows, columns, title=title)
        total = data.get("total") if isinstance(data, dict) else None
        if isinstance(total, int) and total > len(rows):
            note(f"{len(rows)} of {total:,} shown")
    else:
        print(f"({empty})", file=sys.stderr)


def facts(data: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    """One object as `key: value` lines."""
    width = max((len(k) for k in (keys or data)), default=0)
    for key in keys or data:
        value = data.get(key)
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        print(f"{key:<{width}}  {'-' if shown is None else shown}")


def stderr_console() -> Any:
    """A rich console on stderr (progress bars: stdout stays for data)."""
    from rich.console import Console

    return Console(stderr=True)


def note(message: str) -> None:
    """A message for the person at the terminal (stderr: stdout is for data)."""
    print(message, file=sys.stderr)


def error(message: str, details: Any = None) -> None:
    print(f"crawlhub: {message}", file=sys.stderr)
    for line in detail_lines(details):
        print(f"  {line}", file=sys.stderr)


def detail_lines(details: Any) -> list[str]:
    """The API's error details, readable: one line per field error or key."""
    if not details:
        return []
    if isinstance(details, list):
        lines = []
        for item in details:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                lines.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                lines.append(json.dumps(item, ensure_ascii=False))
        return lines
    if isinstance(details, dict):
        return [f"{k}: {json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                for k, v in details.items()]  # fmt: skip
    return [str(details)]
