"""Per-field statistics of a run's items, computed as the items arrive (no second pass), and
their validation against the spider's JSON Schema.

Per field (every top-level field, up to MAX_FIELDS, and every dotted path a coverage rule
names): how many items have it, how many have it empty (null, "", [] or {}), the JSON types
seen, for numbers their min, max and mean, for strings their length's min, max and mean, and
an estimate of the distinct values (a k-minimum-values sketch: exact below K distinct
values, within about 1/sqrt(K) above).
"""

import math
from collections import Counter
from collections.abc import Iterable
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

from crawlhub.quality.rules import QualityRules, compile_schema

MAX_FIELDS = 200  # top-level fields followed per run; more are counted as one "other"
K = 256  # the distinct-values sketch's size
HASH_SPACE = 2**64
SALT = 0x9E3779B97F4A7C15  # hashed with each value
MASK = HASH_SPACE - 1
EXAMPLES = 5  # invalid items kept as examples
EXAMPLE_CHARS = 500
MAX_ERROR_KINDS = 50


_TYPE_NAMES = {type(None): "null", bool: "boolean", int: "integer", float: "number",
               str: "string", list: "array", dict: "object"}  # fmt: skip
_MISSING = object()


class FieldStats:
    """What one field's values looked like, fed a batch of values at a time: each pass over a
    batch is one of Python's builtins (map, len, min, max, sum, set), not a call per value."""

    __slots__ = (
        "_sketch",
        "empty",
        "len_max",
        "len_min",
        "len_sum",
        "num",
        "num_max",
        "num_min",
        "num_sum",
        "present",
        "text",
        "types",
    )  # fmt: skip

    def __init__(self) -> None:
        self.present = self.empty = 0
        self.types: set[str] = set()
        self.num = 0
        self.num_min = math.inf
        self.num_max = -math.inf
        self.num_sum = 0.0
        self.text = self.len_min = self.len_max = self.len_sum = 0
        self._sketch: set[int] = set()  # the K smallest hashes of the values seen

    def add(self, value: Any) -> None:
        self.add_many([value])

    def add_many(self, values: list[Any]) -> None:
        self.present += len(values)
        kinds = set(map(type, values))
        for kind in kinds:
            same: list[Any] = values if len(kinds) == 1 else [v for v in values if type(v) is kind]
            self.types.add(_TYPE_NAMES.get(kind, "object"))
            if kind is str:
                self._strings(same)
            elif kind is int or kind is float:
                self._numbers(same if kind is int else [v for v in same if v - v == 0])
            elif kind is type(None):
                self.empty += len(same)
            elif kind is list or kind is dict:
                self.empty += len(same) - sum(map(bool, same))
                continue  # no distinct count of nested values
            self._distinct(same)

    def _strings(self, values: list[str]) -> None:
        sizes = list(map(len, values))
        low, high = min(sizes), max(sizes)
        if not self.text or low < self.len_min:
            self.len_min = low
        if not self.text or high > self.len_max:
            self.len_max = high
        self.text += len(sizes)
        self.len_sum += sum(sizes)
        self.empty += sizes.count(0)

    def _numbers(self, values: list[int | float]) -> None:  # finite ones (no NaN, no infinity)
        if values:
            self.num += len(values)
            self.num_sum += sum(values)
            self.num_min = min(self.num_min, min(values))
            self.num_max = max(self.num_max, max(values))

    def _distinct(self, values: list[Any]) -> None:
        # A tuple's hash mixes its parts' (a small int's own hash is the int): spread over
        # 64 bits, the k-minimum-values sketch keeps the K smallest.
        hashes: Iterable[int] = map(MASK.__and__, map(hash, zip(values, repeat(SALT))))
        if len(self._sketch) >= K:  # full: only a hash below its largest can enter it
            hashes = filter(max(self._sketch).__gt__, hashes)
        merged = self._sketch.union(hashes)
        self._sketch = merged if len(merged) <= K else set(sorted(merged)[:K])

    def distinct(self) -> int:
        if len(self._sketch) < K:
            return len(self._sketch)
        return round((K - 1) * HASH_SPACE / max(self._sketch))

    def snapshot(self, items: int) -> dict[str, Any]:
        """As stored on the run: shares of all the run's items."""
        found: dict[str, Any] = {
            "present": self.present,
            "coverage": round((self.present - self.empty) / items, 4) if items else 0.0,
            "empty_share": round(self.empty / self.present, 4) if self.present else 0.0,
            "types": sorted(self.types),
            "distinct": self.distinct(),
        }
        if self.num:
            found.update(min=self.num_min, max=self.num_max,
                         mean=round(self.num_sum / self.num, 6))  # fmt: skip
        if self.text:
            found.update(len_min=self.len_min, len_max=self.len_max,
                         len_mean=round(self.len_sum / self.text, 2))  # fmt: skip
        return found


def _at(item: dict[str, Any], path: list[str]) -> Any:
    """The value at a dotted path of an item (_MISSING when it has none)."""
    value: Any = item
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


class ItemStats:
    """A run's item statistics and schema checks, fed one parsed item at a time."""

    def __init__(self, rules: QualityRules | None) -> None:
        self.items = 0
        self.fields: dict[str, FieldStats] = {}
        self.other_fields = 0  # fields past MAX_FIELDS, counted, not followed
        # Nested paths a coverage rule names (top-level ones are followed anyway).
        self.paths = {p: p.split(".") for p in (rules.coverage if rules else {}) if "." in p}
        self.validator = compile_schema(rules.schema_) if rules and rules.schema_ else None
        self.invalid = 0
        self.errors: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def add(self, item: dict[str, Any]) -> None:
        self.add_many([item])

    def add_many(self, items: list[dict[str, Any]]) -> None:
        """Take a batch of items (the reader's, as they arrive)."""
        self.items += len(items)
        fields = self.fields
        for key in dict.fromkeys(chain.from_iterable(items)):  # first seen first
            stats = fields.get(key)
            if stats is None:
                if len(fields) >= MAX_FIELDS:
                    self.other_fields += sum(key in item for item in items)
                    continue
                stats = fields[key] = FieldStats()
            try:  # most batches' items all have each key: one C pass
                values = list(map(itemgetter(key), items))
            except KeyError:
                values = [v for item in items if (v := item.get(key, _MISSING)) is not _MISSING]
            stats.add_many(values)
        for path, parts in self.paths.items():
            values = [v for item in items if (v := _at(item, parts)) is not _MISSING]
            if values:
                stats = fields.get(path)
                if stats is None:
                    stats = fields[path] = FieldStats()
                stats.add_many(values)
        if self.validator is not None:
            for item in items:
                if not self.validator.is_valid(item):
                    self._invalid(item)

    def _invalid(self, item: dict[str, Any]) -> None:
        self.invalid += 1
        problems = []
        validator: Any = self.validator
        for error in validator.iter_errors(item):
            where = "/".join(str(p) for p in error.instance_path) or "(item)"
            kind = "/".join(str(p) for p in error.schema_path)[-80:]
            key = f"{where}: {kind}"
            if key in self.errors or len(self.errors) < MAX_ERROR_KINDS:
                self.errors[key] += 1
            problems.append(f"{where}: {error.message[:200]}")
        if len(self.examples) < EXAMPLES:
            import json

            text = json.dumps(item, ensure_ascii=False, default=str)
            self.examples.append({"errors": problems[:5], "item": text[:EXAMPLE_CHARS]})

    def snapshot(self) -> dict[str, Any]:
        """What the run stores: per-field statistics and the schema's findings."""
        found: dict[str, Any] = {
            "items": self.items,
            "fields": {name: s.snapshot(self.items) for name, s in self.fields.items()},
        }
        if self.other_fields:
            found["other_fields"] = self.other_fields
        if self.validator is not None:
            found["schema"] = {"invalid": self.invalid, "errors": dict(self.errors.most_common()),
                               "examples": self.examples}  # fmt: skip
        return found
