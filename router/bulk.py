"""Bulk import and export of contact methods. Pure: rows in, rows or errors out.

Export writes the fields ``router contacts list --json`` prints (the
:class:`~router.directory.ContactMethod` model), as CSV or JSON lines. Import
reads the same (``id``, ``created_at`` and ``updated_at`` are ignored; the key
is user, transport and normalized value), needs at least ``user_id``,
``transport`` and ``value``, and validates every row before anything is
written, reporting each bad row with its line number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, ValidationError

from router import addresses
from router.directory import ContactMethod
from router.errors import InvalidValue
from router.store import IMPORT_COLUMNS
from router.targets import TargetPolicy

#: What export writes, in order: every field of the model the worker reads.
EXPORT_FIELDS: tuple[str, ...] = tuple(ContactMethod.model_fields)
_STRUCTURED = {"webhook_headers", "webhook_query", "metadata", "tags"}
_IGNORED = {"id", "created_at", "updated_at"}
Format = Literal["csv", "jsonl"]


class ImportRow(ContactMethod):
    """One row as import accepts it: the exported record, where only ``user_id``,
    ``transport`` and ``value`` are required and ``region`` may help parse a phone.
    Unknown columns are refused so a misspelt one is not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    id: str | None = None  # type: ignore[assignment]
    user_id: str = Field(min_length=1, max_length=256, pattern=r"^[^\s\x00-\x1f]+$")
    value: str = Field(min_length=1)
    region: str | None = None
    created_at: AwareDatetime | None = None  # type: ignore[assignment]
    updated_at: AwareDatetime | None = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RowError:
    """A row that cannot be imported, and why."""

    line: int
    message: str


@dataclass
class ImportPlan:
    """Validated rows (in ``IMPORT_COLUMNS`` order) and every refused row."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    users: set[str] = field(default_factory=set)


def detect_format(name: str, head: str) -> Format:
    """JSON lines for ``.jsonl``/``.ndjson`` files or content starting with ``{``; else CSV."""
    if name.endswith((".jsonl", ".ndjson")) or head.lstrip().startswith("{"):
        return "jsonl"
    return "csv"


def _csv_cell(name: str, text: str) -> Any:
    if name in _STRUCTURED:
        stripped = text.strip()
        if name == "tags" and not stripped.startswith("["):
            return [t.strip() for t in stripped.split(",") if t.strip()]
        return json.loads(stripped)
    return text


def read(lines: Iterable[str], fmt: Format) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line number, raw fields) for every data row; unreadable rows as :class:`RowError`."""
    if fmt == "jsonl":
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                yield number, RowError(number, f"not valid JSON ({error})")
                continue
            if not isinstance(record, dict):
                yield number, RowError(number, "not a JSON object")
                continue
            yield number, record
        return
    reader = csv.DictReader(lines)
    for record in reader:
        number = reader.line_num
        if None in record:
            yield number, RowError(number, "more cells than the header has columns")
            continue
        try:
            fields = {k: _csv_cell(k, v) for k, v in record.items() if k and v not in ("", None)}
        except ValueError as error:
            yield number, RowError(number, f"a JSON cell does not parse ({error})")
            continue
        yield number, fields


def _explain(error: ValidationError) -> str:
    item = error.errors()[0]
    where = ".".join(str(p) for p in item["loc"]) or "row"
    got = item.get("input")
    shown = f" {got!r}" if isinstance(got, str | int | float | bool) else ""
    return f"{where}{shown}: {item['msg']}"


def validate(
    number: int, raw: dict[str, Any], allow_landline: bool, policy: TargetPolicy | None = None
) -> tuple[Any, ...] | RowError:
    """One row normalized as ``router contacts add`` would, or why not."""
    fields = {k: v for k, v in raw.items() if k not in _IGNORED}
    try:
        row = ImportRow.model_validate(fields)
    except ValidationError as error:
        return RowError(number, _explain(error))
    try:
        value = addresses.normalize(row.transport, row.value, row.region, policy)
        if row.transport == "sms" and not allow_landline:
            addresses.check_sms_capable(value)
        addresses.normalize_headers(row.webhook_headers, "webhook_headers")
    except InvalidValue as error:
        return RowError(number, str(error))
    if row.transport != "webhook" and (
        row.webhook_method or row.webhook_headers or row.webhook_query or row.webhook_body
    ):
        return RowError(number, "webhook_* fields apply only to transport webhook")
    data = row.model_dump()
    data["value"] = value
    data["tags"] = list(data["tags"])
    return tuple(data[c] for c in IMPORT_COLUMNS)


def plan(
    records: Iterable[tuple[int, dict[str, Any] | RowError]],
    *,
    allow_landline: bool = False,
    policy: TargetPolicy | None = None,
) -> ImportPlan:
    """Validate every record; also refuse a key or a primary given twice in the file."""
    out = ImportPlan()
    keys: dict[tuple[str, str, str], int] = {}
    primaries: dict[tuple[str, str], int] = {}
    for number, raw in records:
        result = raw if isinstance(raw, RowError) else validate(number, raw, allow_landline, policy)
        if isinstance(result, RowError):
            out.errors.append(result)
            continue
        user_id, transport, value, is_primary = result[0], result[1], result[2], result[4]
        key = (user_id, transport, value)
        if key in keys:
            out.errors.append(
                RowError(
                    number,
                    f"{transport} {value!r} for user {user_id!r} is already on line {keys[key]}",
                )
            )
            continue
        if is_primary and (user_id, transport) in primaries:
            out.errors.append(
                RowError(
                    number,
                    f"a second primary {transport} for user "
                    f"{user_id!r} (the first is on line "
                    f"{primaries[(user_id, transport)]})",
                )
            )
            continue
        keys[key] = number
        if is_primary:
            primaries[(user_id, transport)] = number
        out.rows.append(result)
        out.lines.append(number)
        out.users.add(user_id)
    return out


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def export_header(fmt: Format) -> str:
    """What starts an export: the CSV header row, or nothing for JSON lines."""
    if fmt == "jsonl":
        return ""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(EXPORT_FIELDS)
    return buffer.getvalue()


def export_rows(methods: Iterable[ContactMethod], fmt: Format) -> str:
    """Methods as CSV rows or JSON lines, the same fields ``list --json`` prints."""
    if fmt == "jsonl":
        return "".join(m.model_dump_json() + "\n" for m in methods)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for method in methods:
        data = method.model_dump()
        writer.writerow([_csv_value(data[f]) for f in EXPORT_FIELDS])
    return buffer.getvalue()
