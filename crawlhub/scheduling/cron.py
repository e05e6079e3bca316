"""Cron expressions evaluated on a time zone's wall clock, with CrawlHub's DST rules (SPEC §6).

A 5-field expression is matched against naive local wall times (croniter), and each wall time
is then mapped to UTC instants: a wall time inside a spring-forward gap fires once at the
transition instant when the hour is fixed and is skipped otherwise; a wall time shown twice in
a fall-back overlap fires once (first occurrence) when the hour is fixed and at both
occurrences otherwise.
"""

import contextlib
import copy
import heapq
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import get_description
from croniter import CroniterBadDateError, CroniterError, croniter

from crawlhub.errors import InvalidInput

__all__ = ["Cron"]

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = "minute hour day-of-month month day-of-week"
_HORIZON = timedelta(days=5 * 365 + 2)
_LOOKAHEAD = (timedelta(0), timedelta(hours=12), timedelta(days=1))


def _offset(moment: datetime) -> timedelta:
    """Return the UTC offset of an aware datetime (zero when the zone reports none)."""
    return moment.utcoffset() or timedelta(0)


class Cron:
    """A validated 5-field cron expression in an IANA time zone, hashed (H) by `hash_id`."""

    __slots__ = ("_croniter", "_tz", "expr", "fixed_time", "timezone")

    def __init__(
        self, expr: str, timezone: str = "UTC", hash_id: str | bytes | None = None
    ) -> None:
        """Parse and validate `expr` in `timezone`, raising InvalidInput with the reason."""
        self.expr = expr.strip()
        self.timezone = timezone
        fields = self._expand_alias(self.expr).split()
        if len(fields) != 5:
            raise InvalidInput(f"expected 5 fields ({_FIELDS}), got {len(fields)}")
        hour = fields[1]
        self.fixed_time = "*" not in hour and "/" not in hour
        try:
            self._croniter = croniter(
                " ".join(fields),
                datetime(2000, 1, 1),
                ret_type=datetime,
                day_or=True,
                hash_id=self.expr if hash_id is None else hash_id,
            )
        except (CroniterError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise InvalidInput(
                f"invalid cron expression {self.expr!r}: {self._clean(str(exc))}"
            ) from None
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise InvalidInput(f"unknown time zone {timezone!r}") from None
        now = datetime.now(UTC)
        first = next(self._iter_after(now), None)
        if first is None or first > now + _HORIZON:
            raise InvalidInput(f"cron expression {self.expr!r} never fires in the next five years")

    def __repr__(self) -> str:
        """Return a debugging representation."""
        return f"Cron({self.expr!r}, timezone={self.timezone!r})"

    def describe(self) -> str:
        """The expression in plain English, in its time zone ("At 02:30 AM, every day (UTC)")."""
        fields = self._expand_alias(self.expr)
        try:
            text = str(get_description(fields.replace("H", "0")))
        except Exception:  # cron-descriptor reads less than croniter accepts (`#`, `L` mixes)
            return f"{fields} ({self.timezone})"
        hashed = " (H: a value picked once from the schedule's id)" if "H" in fields else ""
        return f"{text} ({self.timezone}){hashed}"

    @staticmethod
    def _expand_alias(expr: str) -> str:
        """Return the 5-field form of an @alias, or `expr` itself when it is not an alias."""
        if not expr:
            raise InvalidInput("cron expression is empty")
        if not expr.startswith("@"):
            return expr
        alias = expr.lower()
        if alias == "@reboot":
            raise InvalidInput("@reboot is not supported: CrawlHub schedules only recurring times")
        if alias not in _ALIASES:
            known = " ".join(_ALIASES)
            raise InvalidInput(f"unknown cron alias {expr!r} (supported: {known})")
        return _ALIASES[alias]

    def _clean(self, message: str) -> str:
        """Turn a croniter error message into a short reason without the echoed expression."""
        text = re.sub(r"^\[[^\]]*\]\s*", "", message.strip())
        for echo in (self.expr, self.expr.lower()):
            if echo and text.lower().startswith(echo.lower()):
                text = text[len(echo) :]
        text = re.sub(r"^(is\s+)?(not acceptable)?[\s,.:;]*", "", text.strip()).strip()
        return text.splitlines()[0] if text else "invalid syntax"

    def next_after(self, after: datetime) -> datetime:
        """Return the first fire strictly after the aware datetime `after`, in UTC."""
        fire = next(self._iter_after(after), None)
        if fire is None:
            raise InvalidInput(f"cron expression {self.expr!r} never fires after {after}")
        return fire

    def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Return the fires f with start < f <= end, ascending, at most `limit`, in UTC."""
        fires: list[datetime] = []
        if limit <= 0 or end <= start:
            return fires
        for fire in self._iter_after(start):
            if fire > end:
                break
            fires.append(fire)
            if len(fires) >= limit:
                break
        return fires

    def preview(self, after: datetime, n: int) -> list[datetime]:
        """Return the next `n` fires strictly after `after`, in UTC (fewer near the end of
        year 9999, where the calendar ends)."""
        fires: list[datetime] = []
        # No date after 9999-12-31: the fires found until then are all there are.
        with contextlib.suppress(OverflowError, CroniterBadDateError):
            fires.extend(islice(self._iter_after(after), max(n, 0)))
        return fires

    def _iter_after(self, after: datetime) -> Iterator[datetime]:
        """Yield the fires strictly after `after` in increasing UTC order, without repeats."""
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("after must be a timezone-aware datetime")
        last = after.astimezone(UTC)
        # A wall time w fires at an instant >= after only if w > after + some nearby offset,
        # so starting at the smallest nearby offset catches the first occurrence of a
        # repeated hour when `after` sits just before or inside a fall-back overlap.
        least = min(_offset((last + delta).astimezone(self._tz)) for delta in _LOOKAHEAD)
        walls = copy.copy(self._croniter)
        walls.set_current(last.replace(tzinfo=None, microsecond=0) + least, force=True)
        pending: list[datetime] = []
        try:
            while True:
                wall = walls.get_next(datetime)
                floor, instants = self._instants(wall)
                for instant in instants:
                    if instant > last:
                        heapq.heappush(pending, instant)
                # Every later wall time maps to instants >= floor, so these are final.
                while pending and pending[0] <= floor:
                    fire = heapq.heappop(pending)
                    if fire > last:
                        last = fire
                        yield fire
        except CroniterBadDateError:
            pass
        while pending:
            fire = heapq.heappop(pending)
            if fire > last:
                last = fire
                yield fire

    def _instants(self, wall: datetime) -> tuple[datetime, list[datetime]]:
        """Map a naive local wall time to (the earliest instant it stands for, its fires)."""
        off0 = _offset(wall.replace(tzinfo=self._tz))
        off1 = _offset(wall.replace(tzinfo=self._tz, fold=1))
        first = (wall - off0).replace(tzinfo=UTC)
        if off0 == off1:
            return first, [first]
        second = (wall - off1).replace(tzinfo=UTC)
        if first < second:  # fall-back overlap: the wall clock shows this time twice
            return first, [first] if self.fixed_time else [first, second]
        # Spring-forward gap: fold=0 reads the time with the old offset, fold=1 with the new.
        moment = self._transition(second, first)
        return moment, [moment] if self.fixed_time else []

    def _transition(self, before: datetime, after: datetime) -> datetime:
        """Return the first instant in (before, after] whose offset is that of `after`."""
        target = _offset(after.astimezone(self._tz))
        low, high = int(before.timestamp()), int(after.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if _offset(datetime.fromtimestamp(middle, self._tz)) == target:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)
