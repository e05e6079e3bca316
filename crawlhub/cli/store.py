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
    output.note(f"{len(page['items'])} of {page['total']} items"
                + (f"; next: --after-id {page['next_after_id']}" if page.get("next_after_id")
                   else ""))  # fmt: skip


@data.command("export")
@click.argument("spider")
@click.option("--format", "fmt", type=FORMATS, default="jsonl", show_default=True)
@click.option("-o", "--output", "target", type=click.Path(path_type=Path),
              help="Default: the server's file name.")  # fmt: skip
@click.option("--run", "--task", "task", help="Only this run's items.")
@click.option("--fields", help="CSV/XLSX columns, e.g. url,title.")
@click.option("--excel", is_flag=True, help="CSV for Excel (BOM, formulas neutralised).")
@pass_api
def export(api: Client, spider: str, fmt: str, target: Path | None, task: str | None,
           fields: str | None, excel: bool) -> None:  # fmt: skip
    """Download a spider's items to a file, with a progress bar on stderr."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    filters = {"spider_id": spider, "task_id": task}
    total = api.request("GET", "/api/data", params={**filters, "page_size": 1})["total"]
    params: dict[str, Any] = {**filters, "fields": fields, "excel": "true" if excel else None}
    partial = Path(f".crawlhub-export-{os.getpid()}.part")
    lines = fmt in ("csv", "jsonl")
    count = TextColumn("{task.completed:,.0f}/{task.total:,.0f} items")
    columns = (TextColumn("{task.description}"), BarColumn(), count if lines else DownloadColumn())
    with Progress(*columns, console=output.stderr_console(), transient=True) as bar:
        job = bar.add_task(f"{spider}.{fmt}", total=total if lines else None)

        def advance(chunk: bytes) -> None:
            bar.advance(job, chunk.count(b"\n") if lines else len(chunk))

        try:
            size, served = api.download(f"/api/data/export/{fmt}", params, partial, advance)
            target = target or Path(served or f"{spider}.{fmt}")
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    output.note(f"wrote {total:,} items, {size:,} bytes to {target}")


old_export = click.Command("export", callback=export.callback, params=export.params,
                           help="Same as `data export`.", hidden=True)  # fmt: skip

COMMANDS = [data, old_export]
