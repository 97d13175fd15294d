"""Import rows are validated like `contacts add`; export rows read back as the same records."""

from __future__ import annotations

from router import bulk
from router.store import IMPORT_COLUMNS
from tests.conftest import make_method


def plan_csv(text: str, **options: bool) -> bulk.ImportPlan:
    return bulk.plan(bulk.read(text.splitlines(keepends=True), "csv"), **options)


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
    plan = bulk.plan(bulk.read(lines, "jsonl"))
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
        plan = bulk.plan(bulk.read(text.splitlines(keepends=True), fmt))
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
