"""Scrapy extension that leaves a crawl's final stats in a file for CrawlHub to keep on the task.

Enabled by ``crawlhub.child.bootstrap`` in every Scrapy run; does nothing unless
``CRAWLHUB_STATS_PATH`` is set.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any, Self

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.statscollectors import StatsCollector

from crawlhub.sdk import dumps

STATS_PATH_ENV = "CRAWLHUB_STATS_PATH"  # where the final stats go, as a JSON object

logger = logging.getLogger(__name__)


class StatsFileWriter:
    """Write Scrapy's stats to $CRAWLHUB_STATS_PATH, atomically, when the spider closes."""

    def __init__(self, stats: StatsCollector, path: str) -> None:
        self.stats = stats
        self.path = path
        self.finish_reason: str | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Build the extension for ``crawler`` (Scrapy's constructor hook)."""
        path = os.environ.get(STATS_PATH_ENV)
        if not path:
            raise NotConfigured
        writer = cls(crawler.stats, path)
        crawler.signals.connect(writer.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(writer.engine_stopped, signal=signals.engine_stopped)
        return writer

    def spider_closed(self, spider: Spider, reason: str) -> None:
        """Save the stats as soon as the crawl is over (CoreStats has set finish_reason)."""
        self.finish_reason = reason
        self.save()

    def engine_stopped(self) -> None:
        """Save them again with what asynchronous spider_closed handlers added meanwhile.

        The feed exporter, for one, counts its stored and failed feeds only after
        the spider_closed signal handlers have all started.
        """
        if self.finish_reason is not None:
            self.save()

    def save(self) -> None:
        """Replace the stats file with the current stats."""
        stats = dict(self.stats.get_stats())
        if self.finish_reason is not None:
            # In case CoreStats is disabled: CrawlHub reports how the crawl ended.
            stats.setdefault("finish_reason", self.finish_reason)
        try:
            write_atomically(self.path, dumps(stats, default=_stats_value))
        except OSError as exc:
            logger.error(
                "Could not save the crawl stats to %s; the task will have none: %s", self.path, exc
            )


def write_atomically(path: str, text: str) -> None:
    """Replace the file at ``path`` with ``text`` so a reader sees the old file or the new one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _stats_value(value: Any) -> Any:
    """Datetimes as ISO 8601 strings, anything else JSON has no form for as its str()."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)
