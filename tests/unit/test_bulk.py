"""Import rows are validated like `contacts add`; export rows read back as the same records."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.directory import bulk
from router.directory.models import IMPORT_COLUMNS
from tests.conftest import make_method


def plan_csv(text: str, **options: bool) -> bulk.ImportPlan:
    return bulk.plan(bulk.read(text, "csv"), **options)


def row(plan: bulk.ImportPlan, index: int = 0) -> dict[str, object]:
    return dict(zip(IMPORT_COLUMNS, plan.rows[index], strict=True))


def test_csv_rows_are_normalized_like_contacts_add() -> None:
    plan = plan_csv(
        "user_id,transport,value,region,tags,metadata\n"
        'alice,sms,(415) 555-1234,US,"a, b","{""k"": ""v""}"\n'
        'alice,email,Alice@Example.COM,,["x"],\n'
    )
    assert plan.errors == []
    assert row(plan, 0)["value"] == "+14155551234" and row(plan, 0)["tags"] == ["a", "b"]
    assert row(plan, 0)["metadata"] == {"k": "v"}
    assert row(plan, 1)["value"] == "alice@example.com" and row(plan, 1)["tags"] == ["x"]
    assert plan.users == {"alice"}


def test_each_bad_row_is_reported_with_its_line_number() -> None:
    plan = plan_csv(
        "user_id,transport,value,verified,colour\n"
        "alice,email,a@example.com,true,\n"
        "alice,email,nope,,\n"
        "alice,sms,+442071838750,,\n"
        ",email,b@example.com,,\n"
        "alice,email,c@example.com,perhaps,\n"
        "alice,email,d@example.com,,red\n"
        "alice,email,e@example.com,,,extra\n"
    )
    assert [(e.line, e.message.split(":")[0]) for e in plan.errors] == [
        (3, "value"),
        (4, "value"),
        (5, "user_id"),
        (6, "verified 'perhaps'"),
        (7, "colour 'red'"),
        (8, "more cells than the header has columns"),
    ]
    assert len(plan.rows) == 1


def test_landlines_pass_when_allowed() -> None:
    plan = plan_csv("user_id,transport,value\nalice,sms,+442071838750\n", allow_landline=True)
    assert plan.errors == [] and row(plan)["value"] == "+442071838750"


def test_a_key_or_a_primary_twice_in_one_file_is_refused() -> None:
    plan = plan_csv(
        "user_id,transport,value,is_primary\n"
        "alice,email,a@example.com,true\n"
        "alice,email,A@example.com,\n"
        "alice,email,b@example.com,true\n"
    )
    assert [e.line for e in plan.errors] == [3, 4]
    assert "already on line 2" in plan.errors[0].message
    assert "second primary" in plan.errors[1].message


def test_jsonl_rows_and_broken_lines() -> None:
    lines = [
        '{"user_id": "a", "transport": "webhook", "value": "https://h.example", '
        '"webhook_method": "GET"}\n',
        "\n",
        "[1]\n",
        "{oops\n",
    ]
    plan = bulk.plan(bulk.read("".join(lines), "jsonl"))
    assert row(plan)["webhook_method"] == "GET"
    assert [(e.line, e.message[:10]) for e in plan.errors] == [(3, "not a JSON"), (4, "not valid ")]


def test_webhook_options_on_other_transports_are_refused() -> None:
    plan = plan_csv("user_id,transport,value,webhook_method\nalice,email,a@example.com,POST\n")
    assert "only to transport webhook" in plan.errors[0].message


def test_export_reads_back_as_the_same_rows_in_both_formats() -> None:
    methods = [
        make_method("m1", label="work", is_primary=True, metadata={"k": "v"}, tags=("a",)),
        make_method(
            "m2", transport="sms", value="+14155551234", suppress_up=True, min_severity="error"
        ),
        make_method(
            "m3",
            transport="webhook",
            webhook_method="PUT",
            webhook_headers={"X": "1"},
            webhook_body='{"t": "{{title}}"}',
        ),
    ]
    for fmt in ("csv", "jsonl"):
        text = bulk.export_header(fmt) + bulk.export_rows(methods, fmt)
        plan = bulk.plan(bulk.read(text, fmt))
        assert plan.errors == []
        for method, values in zip(methods, plan.rows, strict=True):
            expected = method.model_dump()
            assert {
                c: (list(expected[c]) if c == "tags" else expected[c]) for c in IMPORT_COLUMNS
            } == dict(zip(IMPORT_COLUMNS, values, strict=True))


def test_format_is_detected_from_name_or_content() -> None:
    assert bulk.detect_format("x.jsonl", "") == "jsonl"
    assert bulk.detect_format("x.txt", ' {"a": 1}') == "jsonl"
    assert bulk.detect_format("x.csv", "user_id,transport") == "csv"


# -- records split only where the format splits them (issue 17, items 9 and 10) ------------

# Every character str.splitlines() would split on, other than \n and \r.
SEPARATORS = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei"


def test_line_separators_inside_values_stay_in_their_record_in_both_formats() -> None:
    methods = [
        make_method("m1", label=SEPARATORS, metadata={"note": SEPARATORS}),
        make_method("m2", label="plain"),
    ]
    for fmt in ("csv", "jsonl"):
        text = bulk.export_header(fmt) + bulk.export_rows(methods, fmt)
        plan = bulk.plan(bulk.read(text, fmt))
        assert plan.errors == [], (fmt, plan.errors)
        assert [row(plan, i)["label"] for i in (0, 1)] == [SEPARATORS, "plain"]
        assert row(plan, 0)["metadata"] == {"note": SEPARATORS}


def test_a_refusal_names_the_line_its_record_starts_on() -> None:
    plan = plan_csv(
        "user_id,transport,value,label\n"
        f"alice,email,a@example.com,{SEPARATORS}\n"
        'alice,email,b@example.com,"two\nlines"\n'
        "alice,email,nope,\r\n"
        "\n"
        "alice,fax,c@example.com,\n"
    )
    assert [e.line for e in plan.errors] == [5, 7]
    # Raw U+2028 and U+0085 (JSON escapes only the C0 controls), a CRLF line end.
    first = {
        "user_id": "alice",
        "transport": "email",
        "value": "a@example.com",
        "label": SEPARATORS,
    }
    jsonl = (
        json.dumps(first, ensure_ascii=False) + "\r\n"
        '{"user_id": "alice", "transport": "fax", "value": "b@example.com"}\n'
    )
    assert "\u2028" in jsonl and "\x85" in jsonl
    plan = bulk.plan(bulk.read(jsonl, "jsonl"))
    assert len(plan.rows) == 1 and [e.line for e in plan.errors] == [2]


def test_a_cell_over_the_limit_refuses_only_its_row() -> None:
    plan = plan_csv(
        "user_id,transport,value,label\n"
        "alice,email,a@example.com,\n"
        f'alice,email,b@example.com,"{"x" * (bulk.MAX_CELL + 1)}"\n'
        "alice,email,c@example.com,\n"
    )
    assert [row(plan, i)["value"] for i in (0, 1)] == ["a@example.com", "c@example.com"]
    [error] = plan.errors
    assert error.line == 3 and "131,073 characters long" in error.message


def test_deep_nesting_nul_nan_and_surrogates_refuse_only_their_rows() -> None:
    good = '{"user_id": "alice", "transport": "email", "value": "%s@example.com"%s}\n'
    jsonl = (
        good % ("a", "")
        + good % ("b", ', "metadata": ' + "[" * 100_000 + "]" * 100_000)
        + good % ("c", ', "label": "nul\\u0000here"')
        + good % ("d", ', "metadata": {"k\\u0000": "v"}')
        + good % ("e", ', "metadata": {"k": NaN}')
        + good % ("f", ', "label": "\\ud800"')
        + good % ("g", "")
    )
    plan = bulk.plan(bulk.read(jsonl, "jsonl"))
    assert [row(plan, i)["value"] for i in (0, 1)] == ["a@example.com", "g@example.com"]
    assert [(e.line, e.message.split(";")[0]) for e in plan.errors] == [
        (2, "nests JSON arrays or objects too deeply"),
        (3, "label holds a NUL character (\\u0000), which PostgreSQL cannot store in text"),
        (4, "metadata holds a NUL character (\\u0000), which PostgreSQL cannot store in text"),
        (5, "not valid JSON (NaN is not a JSON number)"),
        (6, "label holds an unpaired surrogate (\\ud800 to \\udfff), which is not UTF-8 text"),
    ]
    nested = plan_csv(
        "user_id,transport,value,metadata\n"
        f'alice,email,a@example.com,"{"[" * 100_000}"\n'
        'alice,email,b@example.com,"{""k"": ""nul\\u0000""}"\n'
    )
    assert [e.line for e in nested.errors] == [2, 3] and nested.rows == []


def test_a_byte_order_mark_is_skipped() -> None:
    plan = plan_csv("\ufeffuser_id,transport,value\nalice,email,a@example.com\n")
    assert plan.errors == [] and row(plan)["user_id"] == "alice"


@pytest.mark.parametrize(
    "cell",
    ["=1+1", "+14155551234", "-2", "@SUM(A1)", "\tx", "\rx", "'=x", "''+x", "'", "'x", "x=1", ""],
)
def test_formula_cells_are_neutralised_and_read_back_exactly(cell: str) -> None:
    written = bulk.neutralise(cell)
    assert not written.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert bulk.restore(written) == cell


@given(st.text(alphabet=st.sampled_from("'=+-@\t\rx1 \n\"\u2028"), max_size=8))
def test_every_cell_survives_neutralise_then_restore(cell: str) -> None:
    written = bulk.neutralise(cell)
    assert not written.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert bulk.restore(written) == cell


def test_exported_csv_has_no_formula_cells_and_reads_back_the_same() -> None:
    methods = [
        make_method("m1", label='=HYPERLINK("http://x")', metadata={"k": "=1"}),
        make_method("m2", transport="sms", value="+14155551234", label="-1"),
        make_method("m3", label="'@quoted"),
    ]
    text = bulk.export_header("csv") + bulk.export_rows(methods, "csv")
    cells = [c for r in csv.reader(io.StringIO(text, newline="")) for c in r]
    assert "'+14155551234" in cells and '\'=HYPERLINK("http://x")' in cells
    assert "''@quoted" in cells
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    plan = bulk.plan(bulk.read(text, "csv"))
    assert plan.errors == []
    assert [row(plan, i)["label"] for i in range(3)] == ['=HYPERLINK("http://x")', "-1", "'@quoted"]
    assert row(plan, 1)["value"] == "+14155551234" and row(plan, 0)["metadata"] == {"k": "=1"}
