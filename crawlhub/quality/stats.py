"""Per-field statistics of a run's items, computed as the items arrive (no second pass), and
their validation against the spider's JSON Schema.

Per field (every top-level field, up to MAX_FIELDS, and every dotted path a coverage rule
names): how many items have it, how many have it empty (null, "", [] or {}), the JSON types
seen, for numbers their min, max and mean, for strings their length's min, max and mean, and
an estimate of the distinct values (a k-minimum-values sketch: exact below K distinct
values, within about 1/sqrt(K) above).
"""

import heapq
import math
from collections import Counter
from typing import Any

from crawlhub.quality.rules import QualityRules, compile_schema

MAX_FIELDS = 200  # top-level fields followed per run; more are counted as one "other"
K = 256  # the distinct-values sketch's size
HASH_SPACE = 2**64
MIX = 0x9E3779B97F4A7C15
MASK = HASH_SPACE - 1
EXAMPLES = 5  # invalid items kept as examples
EXAMPLE_CHARS = 500
MAX_ERROR_KINDS = 50


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class FieldStats:
    """What one field's values looked like."""

    __slots__ = (
        "_seen",
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
        self._sketch: list[int] = []  # the K smallest hashes, negated (a max-heap)
        self._seen: set[int] = set()

    def add(self, value: Any) -> None:
        self.present += 1
        kind = type(value)
        if kind is str:
            size = len(value)
            if self.text:
                if size < self.len_min:
                    self.len_min = size
                elif size > self.len_max:
                    self.len_max = size
            else:
                self.types.add("string")
                self.len_min = self.len_max = size
            if not size:
                self.empty += 1
            self.text += 1
            self.len_sum += size
        elif kind is int or kind is float:
            self.types.add("integer" if kind is int else "number")
            if value == value and value not in (math.inf, -math.inf):  # not NaN or infinite
                self.num += 1
                self.num_sum += value
                if value < self.num_min:
                    self.num_min = value
                if value > self.num_max:
                    self.num_max = value
        else:
            self.types.add(_type(value))
            if value is None or (kind in (list, dict) and not value):
                self.empty += 1
            if kind is list or kind is dict:
                return  # no distinct count of nested values
        # Python's hash of a small int is the int: mixed (Fibonacci hashing) to spread it.
        h = (hash(value) * MIX) & MASK
        sketch = self._sketch
        if len(sketch) < K:
            if h not in self._seen:
                self._seen.add(h)
                heapq.heappush(sketch, -h)
        elif h < -sketch[0] and h not in self._seen:
            self._seen.discard(-heapq.heappushpop(sketch, -h))
            self._seen.add(h)

    def distinct(self) -> int:
        if len(self._sketch) < K:
            return len(self._sketch)
        return round((K - 1) * HASH_SPACE / -self._sketch[0])

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


def _at(item: dict[str, Any], path: list[str]) -> tuple[bool, Any]:
    """The value at a dotted path of an item (found, value)."""
    value: Any = item
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


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
        self.items += 1
        fields = self.fields
        for key, value in item.items():
            stats = fields.get(key)
            if stats is None:
                if len(fields) >= MAX_FIELDS:
                    self.other_fields += 1
                    continue
                stats = fields[key] = FieldStats()
            stats.add(value)
        for path, parts in self.paths.items():
            found, value = _at(item, parts)
            if found:
                stats = fields.get(path)
                if stats is None:
                    stats = fields[path] = FieldStats()
                stats.add(value)
        if self.validator is not None and not self.validator.is_valid(item):
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
