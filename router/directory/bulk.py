"""Bulk import and export of contact methods. Pure: rows in, rows or errors out.

Export writes the fields ``router contacts list --json`` prints (the
:class:`~router.directory.models.ContactMethod` model), as CSV or JSON lines. Import
reads the same (``id``, ``external_id``, ``created_at`` and ``updated_at`` are ignored; the key
is user, transport and normalized value), needs at least ``user_id``,
``transport`` and ``value``, and validates every row before anything is
written, reporting each bad row with its line number.

Records are split only where the format splits them: JSON lines at ``\n``
(a ``\r`` before it is dropped), CSV by the csv module, whose quoted cells may
hold any character. Line separators inside a value (U+2028, U+0085, vertical
tab, form feed) stay in the value. A UTF-8 byte order mark is skipped.

CSV cells that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return, OWASP's list) are written with a
``'`` in front. So that every cell reads back exactly, the rule is: export adds
one ``'`` to every cell that is zero or more ``'`` followed by one of those
characters; import removes one ``'`` from every cell that is one or more ``'``
followed by one of them. A phone number ``+14155551234`` is exported as
``'+14155551234`` and imported as ``+14155551234``; a label ``'=x`` as ``''=x``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, ValidationError

from router.directory import addresses
from router.directory.models import IMPORT_COLUMNS, ContactMethod
from router.directory.targets import TargetPolicy
from router.errors import InvalidValue

#: What export writes, in order: every field of the model the worker reads.
EXPORT_FIELDS: tuple[str, ...] = tuple(ContactMethod.model_fields)
_STRUCTURED = {"webhook_headers", "webhook_query", "metadata", "tags"}
_IGNORED = {"id", "created_at", "updated_at", "external_id"}  # external_id: set through router api
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


#: The longest CSV cell import takes (the csv module's own default field limit).
MAX_CELL = 131_072
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")


def neutralise(cell: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (see the module docstring)."""
    return "'" + cell if _FORMULA.match(cell) else cell


def restore(cell: str) -> str:
    """The cell :func:`neutralise` was given: one ``'`` off a neutralised cell."""
    return cell[1:] if _NEUTRALISED.match(cell) else cell


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json(text: str) -> Any:
    """JSON as PostgreSQL's jsonb takes it: no NaN or Infinity."""
    return json.loads(text, parse_constant=_refuse_constant)


def _csv_cell(name: str, text: str) -> Any:
    if name in _STRUCTURED:
        stripped = text.strip()
        if name == "tags" and not stripped.startswith("["):
            return [t.strip() for t in stripped.split(",") if t.strip()]
        return _json(stripped)
    return text


def read(text: str, fmt: Format) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line number, raw fields) for every data row of a file's text; unreadable rows
    as :class:`RowError`. A row's number is the line it starts on."""
    text = text.removeprefix("\ufeff")  # a byte order mark, as spreadsheets write
    if fmt == "jsonl":
        yield from _read_jsonl(text)
    else:
        yield from _read_csv(text)


def _read_jsonl(text: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            record = _json(line)
        except RecursionError:
            yield number, RowError(number, "nests JSON arrays or objects too deeply; flatten it")
            continue
        except ValueError as error:
            yield number, RowError(number, f"not valid JSON ({error}); fix or remove the line")
            continue
        if not isinstance(record, dict):
            yield number, RowError(number, "not a JSON object; each line must be one {...}")
            continue
        yield number, record


def _read_csv(text: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    # The csv module's field limit would end the whole read with an error; cells
    # are measured here instead, so a long one refuses only its row.
    limit = csv.field_size_limit(sys.maxsize)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header: list[str] | None = None
        end = 0  # the last line read so far
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                end = reader.line_num
                yield start, RowError(start, f"not valid CSV ({error}); fix the row")
                continue
            end = reader.line_num
            if not cells:
                continue  # a blank line
            if header is None:
                header = [restore(c) for c in cells]
                continue
            yield start, _csv_row(start, header, cells)
    finally:
        csv.field_size_limit(limit)


def _csv_row(number: int, header: list[str], cells: list[str]) -> dict[str, Any] | RowError:
    if len(cells) > len(header):
        return RowError(number, "more cells than the header has columns")
    longest = max(len(c) for c in cells)
    if longest > MAX_CELL:
        return RowError(
            number,
            f"a cell is {longest:,} characters long, over the {MAX_CELL:,} allowed (an "
            "unclosed quote makes a cell run on to the end of the file); shorten it",
        )
    try:
        return {
            name: _csv_cell(name, restore(cell))
            for name, cell in zip(header, cells, strict=False)
            if name and cell != ""
        }
    except RecursionError:
        return RowError(number, "a JSON cell nests arrays or objects too deeply; flatten it")
    except ValueError as error:
        return RowError(number, f"a JSON cell does not parse ({error}); fix it")


def _unstorable(value: Any) -> str | None:
    """What in ``value`` (text, or JSON made of it) PostgreSQL cannot store, if anything."""
    pending = [value]
    while pending:  # a loop, not recursion: JSON may nest as deep as the parser allows
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a NUL character (\\u0000), which PostgreSQL cannot store in text"
            try:
                item.encode()
            except UnicodeEncodeError:
                return "an unpaired surrogate (\\ud800 to \\udfff), which is not UTF-8 text"
    return None


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
    for name, value in fields.items():
        problem = _unstorable(name) or _unstorable(value)
        if problem:
            shown = name if _unstorable(name) is None else "a field name"
            return RowError(number, f"{shown} holds {problem}; remove it")
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
        writer.writerow([neutralise(_csv_value(data[f])) for f in EXPORT_FIELDS])
    return buffer.getvalue()
