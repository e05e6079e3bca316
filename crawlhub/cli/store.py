"""`crawlhub data …` (and `crawlhub export`, its old name for `data export`)."""

import json
import os
from pathlib import Path
from typing import Any

import click

from crawlhub.cli import output
from crawlhub.cli.client import Client
from crawlhub.cli.session import JSON_OPTION, pass_api

FORMATS = click.Choice(["csv", "json", "jsonl", "xlsx"])


@click.group()
def data() -> None:
    """Scraped items: query them, export them."""


@data.command("query")
@click.option("--spider", help="A spider's items (name or id).")
@click.option("--run", "task", help="One run's items.")
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--after-id", type=int, help="Items after this id (keyset paging).")
@JSON_OPTION
@pass_api
def query(api: Client, spider: str | None, task: str | None, limit: int, after_id: int | None,
          as_json: bool) -> None:  # fmt: skip
    """Print items, oldest first: one JSON object per line (or the API's page with --json)."""
    params = {"spider_id": spider, "task_id": task, "page_size": limit, "after_id": after_id}
    page = api.request("GET", "/api/data", params=params)
    if as_json:
        output.emit_json(page)
        return
    for item in page["items"]:
        print(json.dumps(item["data"], ensure_ascii=False))
    total = page["total"] if page.get("total_exact", True) else None  # no estimate as a count
    output.note(paging_line(len(page["items"]), total, page.get("next_after_id")))


def paging_line(shown: int, total: int | None, next_after_id: int | None) -> str:
    """What a page of items held and how to read on: `3 of 8 items; next: --after-id 26`, or
    `3 items` past an id (no total there), `no items` when nothing is left."""
    if shown == 0:
        return "no items"
    said = f"{shown} of {total:,} items" if total is not None else f"{shown} items"
    return said + (f"; next: --after-id {next_after_id}" if next_after_id else "; the last")


@data.command("export")
@click.argument("spider", required=False)
@click.option("--format", "fmt", type=FORMATS, default="jsonl", show_default=True)
@click.option("-o", "--output", "target", type=click.Path(path_type=Path),
              help="Default: the server's file name.")  # fmt: skip
@click.option("--run", "--task", "task", help="Only this run's items.")
@click.option("--fields", help="CSV/XLSX columns, e.g. url,title.")
@click.option("--excel", is_flag=True, help="CSV for Excel (BOM, formulas neutralised).")
@pass_api
def export(api: Client, spider: str | None, fmt: str, target: Path | None, task: str | None,
           fields: str | None, excel: bool) -> None:  # fmt: skip
    """Download items to a file (a spider's, a run's, or all of them), with a progress bar
    on stderr."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    filters = {"spider_id": spider, "task_id": task}
    total = api.request("GET", "/api/data", params={**filters, "page_size": 1})["total"]
    params: dict[str, Any] = {**filters, "fields": fields, "excel": "true" if excel else None}
    partial = Path(f".crawlhub-export-{os.getpid()}.part")
    lines = fmt in ("csv", "jsonl")
    count = TextColumn("{task.completed:,.0f}/{task.total:,.0f} items")
    columns = (TextColumn("{task.description}"), BarColumn(), count if lines else DownloadColumn())
    with Progress(*columns, console=output.stderr_console(), transient=True) as bar:
        job = bar.add_task(f"{spider or 'items'}.{fmt}", total=total if lines else None)

        def advance(chunk: bytes) -> None:
            bar.advance(job, chunk.count(b"\n") if lines else len(chunk))

        try:
            size, served = api.download(f"/api/data/export/{fmt}", params, partial, advance)
            target = target or Path(served or f"{spider or 'items'}.{fmt}")
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    output.note(f"wrote {total:,} items, {size:,} bytes to {target}")


old_export = click.Command("export", callback=export.callback, params=export.params,
                           help="Same as `data export`.", hidden=True)  # fmt: skip

COMMANDS = [data, old_export]
