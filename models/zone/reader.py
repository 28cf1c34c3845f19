"""Reading a composed YAML tree field by field, keeping the line of every value.

Kept apart from `models.zone.parse` (which knows what a zone is) because this part only
knows how to turn nodes into checked values and how to say where a value was wrong. Every
check records a problem and returns a harmless stand-in instead of raising, so one run
reports everything wrong with a file; the caller throws the document away if anything was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from models.sla.calendar import build_calendar
from models.sla.durations import parse_duration
from models.zone.schema import PERIOD, period, schedule_time

_TAG = "tag:yaml.org,2002:"
_NULL, _INT, _BOOL, _TIMESTAMP = (_TAG + t for t in ("null", "int", "bool", "timestamp"))
_SCALARS = SafeConstructor()


@dataclass(frozen=True)
class ZoneProblem:
    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {field}{self.message}"


class ZoneFileError(ValueError):
    """A zone file refused as a whole; `problems` lists each fault with its line, in file
    order so the admin can fix them top to bottom."""

    def __init__(self, problems: list[ZoneProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid zone file")


@dataclass(frozen=True)
class _Ref:
    kind: str
    value: str
    node: Node
    path: str
    role: str | None


def _is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL)


def _join(path: str, key: str) -> str:
    if not key:
        return path
    return f"{path}.{key}" if path and not key.startswith("[") else f"{path}{key}"


class Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[ZoneProblem] = []
        self._refs: list[_Ref] = []
        self._seen: dict[tuple[str, object], int] = {}

    def fail(self, node: Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(ZoneProblem(self.source, line, path, message))

    def mapping(self, node: Node | None, path: str, allowed: frozenset[str]) -> Fields | None:
        if not isinstance(node, MappingNode):
            self.fail(node, path, "expected a mapping of `field: value`")
            return None
        values: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, path, "field names must be plain text")
                continue
            key = key_node.value
            if key in values:
                self.fail(key_node, _join(path, key), "field given twice")
            elif key not in allowed:
                self.fail(
                    key_node,
                    _join(path, key),
                    f"unknown field (expected one of: {', '.join(sorted(allowed))})",
                )
            else:
                values[key] = value_node
        return Fields(self, node, path, values)

    def first_seen(self, kind: str, value: object, line: int) -> int | None:
        """The line where `value` was first declared as `kind`, or None if this is the first."""
        first = self._seen.get((kind, value))
        if first is None:
            self._seen[(kind, value)] = line
        return first

    def add_ref(self, ref: _Ref) -> None:
        self._refs.append(ref)

    def check_refs(self, known: dict[str, set[str]]) -> None:
        for ref in self._refs:
            if ref.value and ref.value not in known[ref.kind]:
                self.fail(ref.node, ref.path, f"unknown {ref.kind} {ref.value!r}")

    def check_roles_do_not_mix(self) -> None:
        """Zone staff may not also speak for an enterprise: they could confirm their own fix
        and rate their own squad."""
        staff = {r.value for r in self._refs if r.role == "staff"}
        for ref in self._refs:
            if ref.role == "enterprise" and ref.value in staff:
                self.fail(
                    ref.node,
                    ref.path,
                    f"{ref.value!r} is zone staff (lead, member, manager "
                    "or admin) and cannot also be an enterprise contact",
                )


class Fields:
    """One mapping of the file, read field by field."""

    def __init__(self, reader: Reader, node: Node, path: str, values: dict[str, Node]) -> None:
        self.reader = reader
        self.node = node
        self.path = path
        self.values = values

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def value_node(self, key: str) -> Node | None:
        node = self.values.get(key)
        return None if _is_null(node) else node

    def fail(self, key: str, message: str, node: Node | None = None) -> None:
        self.reader.fail(node or self.values.get(key) or self.node, self.at(key), message)

    def missing(self, key: str) -> None:
        self.reader.fail(self.node, self.at(key), "required field is missing")

    def _scalar(self, key: str, node: Node, what: str) -> str | None:
        if not isinstance(node, ScalarNode):
            self.fail(key, f"expected {what}, not a list or mapping", node)
            return None
        return str(node.value).strip()

    def optional(
        self,
        key: str,
        *,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] = (),
        what: str = "value",
    ) -> str | None:
        node = self.value_node(key)
        if node is None:
            return None
        return self._checked_text(key, node, pattern, choices, what)

    def text(
        self,
        key: str,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] = (),
        what: str = "value",
    ) -> str:
        node = self.value_node(key)
        if node is None:
            if default is None:
                self.missing(key)
            return default or ""
        return self._checked_text(key, node, pattern, choices, what) or (default or "")

    def _checked_text(
        self,
        key: str,
        node: Node,
        pattern: re.Pattern[str] | None,
        choices: tuple[str, ...],
        what: str,
    ) -> str | None:
        value = self._scalar(key, node, "text")
        if value is None:
            return None
        if not value:
            self.fail(key, "must not be empty", node)
        elif choices and value not in choices:
            self.fail(key, f"{value!r} is not one of: {', '.join(choices)}", node)
        elif pattern is not None and not pattern.fullmatch(value):
            self.fail(key, f"{value!r} is not a valid {what}", node)
        else:
            return value
        return None

    def unique(self, key: str, kind: str, *, pattern: re.Pattern[str]) -> str:
        value = self.text(key, pattern=pattern, what=f"{kind} {key}")
        if value:
            self.unique_value(key, kind, value)
        return value

    def unique_value(self, key: str, kind: str, value: object) -> None:
        node = self.values.get(key) or self.node
        first = self.reader.first_seen(kind, value, node.start_mark.line + 1)
        if first is not None:
            self.fail(key, f"duplicate {kind} {value!r} (first at line {first})")

    def ref(self, key: str, kind: str, *, required: bool = True, role: str | None = None) -> str:
        node = self.value_node(key)
        if node is None:
            if required:
                self.missing(key)
            return ""
        value = self._checked_text(key, node, None, (), kind) or ""
        if value:
            self.reader.add_ref(_Ref(kind, value, node, self.at(key), role))
        return value

    def refs(self, key: str, kind: str, *, role: str | None = None) -> tuple[str, ...]:
        return tuple(value for value, _, _ in self.located_refs(key, kind, role=role))

    def located_refs(
        self, key: str, kind: str, *, role: str | None = None
    ) -> list[tuple[str, str, Node]]:
        """A list of names, each with the sub-path and node to blame for it later."""
        found: list[tuple[str, str, Node]] = []
        for index, node in self._sequence(key):
            sub = f"{key}[{index}]"
            value = self._scalar(sub, node, f"a {kind} name")
            if value == "":
                self.fail(sub, "must not be empty", node)
            if not value:
                continue
            if any(value == seen for seen, _, _ in found):
                self.fail(sub, f"{value!r} is listed twice", node)
                continue
            found.append((value, sub, node))
            self.reader.add_ref(_Ref(kind, value, node, self.at(sub), role))
        return found

    def _sequence(self, key: str) -> list[tuple[int, Node]]:
        node = self.value_node(key)
        if node is None:
            return []
        if not isinstance(node, SequenceNode):
            self.fail(key, "expected a list")
            return []
        return list(enumerate(node.value))

    def section(self, key: str, allowed: frozenset[str]) -> Fields | None:
        node = self.value_node(key)
        return None if node is None else self.reader.mapping(node, self.at(key), allowed)

    def items(self, key: str, allowed: frozenset[str]) -> list[Fields]:
        found: list[Fields] = []
        for index, node in self._sequence(key):
            fields = self.reader.mapping(node, self.at(f"{key}[{index}]"), allowed)
            if fields is not None:
                found.append(fields)
        return found

    def integer(self, key: str) -> int | None:
        node = self.value_node(key)
        if node is None:
            return None
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.fail(key, "expected a whole number")
            return None
        return int(_SCALARS.construct_yaml_int(node))

    def boolean(self, key: str, *, default: bool) -> bool:
        node = self.value_node(key)
        if node is None:
            return default
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            self.fail(key, "expected true or false")
            return default
        return bool(_SCALARS.construct_yaml_bool(node))

    def duration(self, key: str, default: timedelta) -> timedelta:
        node = self.value_node(key)
        if node is None:
            return default
        text = self._scalar(key, node, "a duration such as 10m, 2h, 1d or 1h30m")
        if text is None:
            return default
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.fail(key, str(exc))
            return default

    def time_of_day(self, key: str, default: time | None) -> time | None:
        """A time of day such as "08:30", or `off`; null or missing keeps the default. The text
        is taken as written, so an unquoted 08:30 is not YAML 1.1's number of minutes."""
        node = self.value_node(key)
        if node is None:
            return default
        text = self._scalar(key, node, 'a time such as "08:30", or off')
        if text is None:
            return default
        try:
            return schedule_time(text)
        except ValueError as exc:
            self.fail(key, str(exc))
            return default

    def ratio(self, key: str, default: float) -> float:
        """Accepts "80%" as admins write it and 0.8 as programmers do."""
        node = self.value_node(key)
        text = self._scalar(key, node, "a share such as 80%") if node is not None else None
        if text is None:
            return default
        try:
            value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            value = -1.0
        if not 0 < value < 1:
            self.fail(key, f"{text!r} must be a share between 0% and 100%, such as 80% or 0.8")
            return default
        return value

    def number(self, key: str, default: float) -> float:
        """A share or weight: a plain number, zero or more."""
        node = self.value_node(key)
        text = self._scalar(key, node, "a number such as 0.4") if node is not None else None
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            self.fail(key, f"{text!r} must be a number, zero or more, such as 0.4")
            return default
        return value

    def dates(self, key: str) -> tuple[date, ...]:
        found: list[date] = []
        for index, node in self._sequence(key):
            sub = f"{key}[{index}]"
            day: object = None
            if isinstance(node, ScalarNode) and node.tag == _TIMESTAMP:
                day = _SCALARS.construct_yaml_timestamp(node)
            elif isinstance(node, ScalarNode):
                try:
                    day = date.fromisoformat(node.value.strip())
                except ValueError:
                    day = None
            if not isinstance(day, date) or isinstance(day, datetime):
                self.fail(sub, "expected an ISO date such as 2026-10-01", node)
            elif day in found:
                self.fail(sub, f"{day.isoformat()} is listed twice", node)
            else:
                found.append(day)
        return tuple(found)

    def working_hours(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Checked even when the clock runs round the clock, so switching modes later cannot
        reveal a broken setting at run time."""
        if self.value_node(key) is None:
            return default
        found: list[str] = []
        for index, node in self._sequence(key):
            sub = f"{key}[{index}]"
            text = self._scalar(sub, node, "a period such as 09:00-12:00")
            match = PERIOD.fullmatch(text or "")
            numbers = [int(g) for g in match.groups()] if match else []
            if not numbers or numbers[0] > 23 or numbers[2] > 23 or max(numbers[1::2]) > 59:
                self.fail(sub, f"{text!r} is not a period such as 09:00-12:00", node)
                continue
            found.append("{:02d}:{:02d}-{:02d}:{:02d}".format(*numbers))
        if found and len(found) == len(self._sequence(key)):
            try:
                build_calendar("working_hours", periods=[period(p) for p in found])
            except ValueError as exc:
                self.fail(key, str(exc))
        return tuple(found)

    def check_timezone(self, key: str, name: str) -> None:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(key, f"unknown time zone {name!r} (expected e.g. Asia/Shanghai)")
