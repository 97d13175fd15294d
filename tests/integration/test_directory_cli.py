"""Directory management commands against real PostgreSQL (and Kafka for verification)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from router.directory.models import ContactMethod
from router.kafka.topics import ensure_topics
from router.settings import Settings
from tests.integration.conftest import (
    RouterProcess,
    cli_refused_each,
    collect,
    produce,
    run_cli,
    wait_for_topics,
)
from tests.integration.conftest import add_contact as add
from tests.integration.conftest import cli_ok as ok
from tests.integration.conftest import cli_refused as refused
from tests.integration.test_end_to_end import alert, topics


@pytest.fixture
def people(router_env: dict[str, str]) -> dict[str, ContactMethod]:
    """alice (email primary, sms, webhook) and bob (email), with labels, tags, metadata."""
    for user in ("alice", "bob"):
        ok(router_env, "users", "add", user, "--name", user.title())
    return {
        "alice-email": add(
            router_env,
            "alice",
            "email",
            "alice@example.com",
            "--primary",
            "--label",
            "work",
            "--tag",
            "oncall",
            "--meta",
            "team=db",
        ),
        "alice-sms": add(router_env, "alice", "sms", "+14155551234", "--verified"),
        "alice-hook": add(router_env, "alice", "webhook", "https://h.example/alice"),
        "bob-email": add(router_env, "bob", "email", "bob@example.com", "--meta", "team=web"),
    }


def listed(env: dict[str, str], *filters: str) -> list[ContactMethod]:
    out = ok(env, "contacts", "list", "--json", *filters)
    # split("\n"), not splitlines(): a label may hold U+2028 and other line separators.
    return [ContactMethod.model_validate_json(line) for line in out.split("\n") if line]


# -- users ---------------------------------------------------------------------------------


def test_users_get_list_and_delete(
    router_env: dict[str, str], people: dict[str, ContactMethod]
) -> None:
    assert json.loads(ok(router_env, "users", "get", "alice", "--json"))["name"] == "Alice"
    table = ok(router_env, "users", "list")
    assert table.splitlines()[0].split() == [
        "ID",
        "NAME",
        "TIMEZONE",
        "QUIET",
        "HOURS",
        "MODE",
        "ORDER",
    ]
    assert [
        json.loads(x)["id"] for x in ok(router_env, "users", "list", "--json").splitlines()
    ] == ["alice", "bob"]
    page = run_cli(router_env, "users", "list", "--json", "--limit", "1")
    assert [json.loads(x)["id"] for x in page.stdout.splitlines()] == ["alice"]
    assert "more: --after alice" in page.stderr
    assert "has 1 contact method(s)" in refused(router_env, "users", "delete", "bob")
    assert "--cascade" in refused(router_env, "users", "delete", "bob")
    assert ok(router_env, "users", "delete", "bob", "--cascade").strip() == (
        "deleted user bob with 1 contact method(s) and 0 shift(s)"
    )
    assert "does not exist" in refused(router_env, "users", "get", "bob")
    ok(router_env, "users", "add", "carol")
    assert ok(router_env, "users", "delete", "carol").strip() == "deleted user carol"


# -- contacts: read --------------------------------------------------------------------------


def test_list_is_a_table_on_a_terminal_and_model_lines_under_json(
    router_env: dict[str, str],
    people: dict[str, ContactMethod],
) -> None:
    lines = ok(router_env, "contacts", "list").splitlines()
    assert lines[0].split() == ["ID", "USER", "TRANSPORT", "VALUE", "LABEL", "FLAGS", "TAGS"]
    assert set(lines[1]) <= {"-", " "}
    row = next(line for line in lines if "alice@example.com" in line)
    assert row.split() == [
        people["alice-email"].id,
        "alice",
        "email",
        "alice@example.com",
        "work",
        "primary",
        "oncall",
    ]
    assert [m.id for m in listed(router_env)] == [
        people[k].id for k in ("alice-email", "alice-sms", "alice-hook", "bob-email")
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (("--user", "bob"), ["bob-email"]),
        (("--transport", "email"), ["alice-email", "bob-email"]),
        (("--verified",), ["alice-sms"]),
        (("--unverified", "--user", "alice"), ["alice-email", "alice-hook"]),
        (("--search", "h.example"), ["alice-hook"]),
        (("--search", "BOB"), ["bob-email"]),
        (("--search", "work"), ["alice-email"]),
        (("--meta", "team=db"), ["alice-email"]),
        (("--tag", "oncall"), ["alice-email"]),
    ],
)
def test_list_and_count_filters(
    router_env: dict[str, str],
    people: dict[str, ContactMethod],
    filters: tuple[str, ...],
    expected: list[str],
) -> None:
    assert [m.id for m in listed(router_env, *filters)] == [people[k].id for k in expected]
    assert ok(router_env, "contacts", "count", *filters).strip() == str(len(expected))


def test_list_pages_by_cursor_and_by_page_number(
    router_env: dict[str, str],
    people: dict[str, ContactMethod],
) -> None:
    first = run_cli(router_env, "contacts", "list", "--json", "--limit", "3")
    cursor = re.search(r"--cursor (\S+)", first.stderr)
    assert cursor is not None
    rest = listed(router_env, "--limit", "3", "--cursor", cursor.group(1))
    assert [m.id for m in rest] == [people["bob-email"].id]
    assert [m.id for m in listed(router_env, "--limit", "2", "--page", "2")] == [
        people["alice-hook"].id,
        people["bob-email"].id,
    ]
    assert "not a cursor" in refused(router_env, "contacts", "list", "--cursor", "bogus!")
    assert refused(router_env, "contacts", "list", "--limit", "0", code=2)


def test_get_shows_a_phone_in_every_format(
    router_env: dict[str, str], people: dict[str, ContactMethod]
) -> None:
    record = json.loads(ok(router_env, "contacts", "get", people["alice-sms"].id, "--json"))
    assert ContactMethod.model_validate(record).id == people["alice-sms"].id
    assert record["phone"] == {
        "e164": "+14155551234",
        "international": "+1 415-555-1234",
        "national": "(415) 555-1234",
        "rfc3966": "tel:+1-415-555-1234",
        "country_code": "1",
        "region": "US",
        "number_type": "fixed_line_or_mobile",
    }
    text = ok(router_env, "contacts", "get", people["alice-email"].id)
    assert "metadata:      team=db" in text and "tags:          oncall" in text
    assert "does not exist" in refused(router_env, "contacts", "get", "nope")


def test_primary_of_a_transport(
    router_env: dict[str, str], people: dict[str, ContactMethod]
) -> None:
    shown = json.loads(ok(router_env, "contacts", "primary", "alice", "email", "--json"))
    assert shown["id"] == people["alice-email"].id
    assert "no primary sms" in refused(router_env, "contacts", "primary", "alice", "sms")


# -- contacts: write -------------------------------------------------------------------------


def test_update_metadata_and_tags(
    router_env: dict[str, str], people: dict[str, ContactMethod]
) -> None:
    mid = people["alice-email"].id
    updated = json.loads(
        ok(
            router_env,
            "contacts",
            "update",
            mid,
            "--meta",
            "team=",
            "--meta",
            "tier=gold",
            "--tag",
            "vip",
            "--untag",
            "oncall",
            "--json",
        )
    )
    assert updated["metadata"] == {"tier": "gold"} and updated["tags"] == ["vip"]


def test_landlines_are_refused_for_sms_unless_allowed(router_env: dict[str, str]) -> None:
    ok(router_env, "users", "add", "alice")
    stderr = refused(
        router_env,
        "contacts",
        "add",
        "--user",
        "alice",
        "--transport",
        "sms",
        "--value",
        "+44 20 7183 8750",
    )
    assert "fixed-line number" in stderr and "--allow-landline" in stderr
    assert listed(router_env) == []
    added = add(router_env, "alice", "sms", "+44 20 7183 8750", "--allow-landline")
    assert added.value == "+442071838750"


def test_delete_one_or_all_of_a_user(
    router_env: dict[str, str], people: dict[str, ContactMethod]
) -> None:
    ok(router_env, "contacts", "delete", people["bob-email"].id)
    assert "does not exist" in refused(router_env, "contacts", "delete", people["bob-email"].id)
    assert "--user USER --all" in refused(router_env, "contacts", "delete", "--user", "alice")
    assert "--user USER --all" in refused(router_env, "contacts", "delete")
    assert ok(router_env, "contacts", "delete", "--user", "alice", "--all").strip() == (
        "deleted 3 contact method(s) of user alice"
    )
    assert listed(router_env) == []
    assert "does not exist" in refused(router_env, "contacts", "delete", "--user", "zed", "--all")


# -- verification -------------------------------------------------------------------------------


@pytest.mark.long
async def test_verification_code_round_trip_with_wrong_and_expired_codes(
    router_env: dict[str, str],
    people: dict[str, ContactMethod],
) -> None:
    env = {**router_env, "ROUTER_VERIFICATION_MAX_ATTEMPTS": "2"}
    await ensure_topics(Settings(**{k.removeprefix("ROUTER_").lower(): v for k, v in env.items()}))  # type: ignore[arg-type]
    mid = people["alice-email"].id
    sms = env["ROUTER_TOPIC_EMAIL"]

    async def send_code() -> str:
        assert "sent a verification code to email a***@example.com" in ok(
            env, "contacts", "verify", mid
        )
        seen = await collect(
            env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
            [sms],
            until=lambda s: len(s[sms]) >= 1,
            settle=0.5,
        )
        job = json.loads(seen[sms][-1].value)
        assert job["purpose"] == "verification" and job["to"] == "alice@example.com"
        assert seen[sms][-1].key == mid.encode()
        match = re.search(r"code is (\d{6})", job["text"])
        assert match is not None
        return match.group(1)

    assert "no verification pending" in refused(env, "contacts", "confirm", mid, "123456")
    code = await send_code()
    wrong = "000000" if code != "000000" else "111111"
    assert "1 attempt(s) left" in refused(env, "contacts", "confirm", mid, wrong)
    assert "void" in refused(env, "contacts", "confirm", mid, wrong)
    assert "no verification pending" in refused(env, "contacts", "confirm", mid, code)

    code = await asyncio.sleep(1.1, await send_code())  # a second code replaces the first
    conn = await asyncpg.connect(env["ROUTER_DATABASE_URL"])
    try:
        await conn.execute(
            "UPDATE contact_method_verifications SET expires_at = now() - interval '1 s'"
        )
    finally:
        await conn.close()
    assert "expired" in refused(env, "contacts", "confirm", mid, code)

    code = await send_code()
    confirmed = json.loads(ok(env, "contacts", "confirm", mid, code, "--json"))
    assert confirmed["verified"] is True


# -- import and export -------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_export_reimports_unchanged_as_csv_and_jsonl(
    router_env: dict[str, str],
    people: dict[str, ContactMethod],
    tmp_path: Path,
) -> None:
    for fmt in ("csv", "jsonl"):
        exported = ok(router_env, "contacts", "export", "--format", fmt)
        path = write(tmp_path, f"all.{fmt}", exported)
        assert ok(router_env, "contacts", "import", path).strip() == (
            "imported 4 row(s): 0 added, 0 updated, 4 unchanged, 0 skipped as invalid"
        )
        assert ok(router_env, "contacts", "export", "--format", fmt) == exported
    rows = list(csv.DictReader(io.StringIO(ok(router_env, "contacts", "export"))))
    assert {"user_id", "transport", "value"} <= set(rows[0])
    assert set(rows[0]) == set(ContactMethod.model_fields)


def test_import_adds_updates_and_replaces_the_primary(
    router_env: dict[str, str],
    people: dict[str, ContactMethod],
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "in.csv",
        "user_id,transport,value,label,is_primary,tags\n"
        "alice,email,ALICE@example.com,renamed,false,\n"
        'alice,email,alice2@example.com,,true,"a,b"\n'
        "bob,sms,(415) 555-0100,,,\n",
    )
    stderr = refused(router_env, "contacts", "import", path)
    assert f"{path}:4: value: '(415) 555-0100' is not a valid phone number" in stderr
    path = write(
        tmp_path,
        "in2.csv",
        "user_id,transport,value,region,label,is_primary,tags\n"
        "alice,email,ALICE@example.com,,renamed,false,\n"
        'alice,email,alice2@example.com,,,true,"a,b"\n'
        "bob,sms,(415) 555-0100,US,,,\n",
    )
    assert ok(router_env, "contacts", "import", path).strip() == (
        "imported 3 row(s): 2 added, 1 updated, 0 unchanged, 0 skipped as invalid"
    )
    emails = {m.value: m for m in listed(router_env, "--user", "alice", "--transport", "email")}
    assert (
        emails["alice@example.com"].label == "renamed"
        and not emails["alice@example.com"].is_primary
    )
    assert emails["alice2@example.com"].is_primary and emails["alice2@example.com"].tags == (
        "a",
        "b",
    )
    assert [m.value for m in listed(router_env, "--user", "bob", "--transport", "sms")] == [
        "+14155550100"
    ]


def test_an_import_with_bad_rows_writes_nothing_and_lists_each_by_line(
    router_env: dict[str, str],
    people: dict[str, ContactMethod],
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "bad.csv",
        "user_id,transport,value,is_primary\n"
        "alice,email,new@example.com,\n"  # line 2: fine
        "alice,fax,123,\n"  # 3: transport
        "alice,sms,555-1234,\n"  # 4: no region
        "ghost,email,g@example.com,\n"  # 5: unknown user
        "alice,email,new@example.com,\n"  # 6: repeats line 2
        "alice,sms,+14155550001,true\n"  # 7: fine, primary
        "alice,sms,+14155550002,true\n"  # 8: second primary
        "alice,sms,+442071838750,\n"  # 9: landline
        "alice,email,x@example.com,maybe\n",
    )  # 10: not a boolean
    before = ok(router_env, "contacts", "export")
    stderr = refused(router_env, "contacts", "import", path)
    lines = [int(m) for m in re.findall(rf"{re.escape(path)}:(\d+):", stderr)]
    assert lines == [3, 4, 5, 6, 8, 9, 10]
    assert (
        "transport" in stderr
        and "international form" in stderr
        and "'ghost' does not exist" in stderr
    )
    assert "already on line 2" in stderr and "second primary" in stderr and "fixed-line" in stderr
    assert "nothing was written" in stderr
    assert ok(router_env, "contacts", "export") == before

    done = run_cli(router_env, "contacts", "import", path, "--skip-invalid")
    assert done.returncode == 0
    assert done.stdout.strip() == (
        "imported 2 row(s): 2 added, 0 updated, 0 unchanged, 7 skipped as invalid"
    )


def test_import_jsonl_can_create_users(router_env: dict[str, str], tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "in.jsonl",
        '{"user_id": "dora", "transport": "webhook", "value": "https://h.example/d", '
        '"webhook_method": "PUT", "webhook_headers": {"X": "1"}, "metadata": {"k": "v"}}\n'
        "\n"
        '{"user_id": "dora", "transport": "email", "value": "d@example.com", "verified": true}\n',
    )
    assert "'dora' does not exist" in refused(router_env, "contacts", "import", path)
    assert "2 added" in ok(router_env, "contacts", "import", path, "--create-users")
    [hook] = listed(router_env, "--transport", "webhook")
    assert (hook.webhook_method, hook.webhook_headers, hook.metadata) == (
        "PUT",
        {"X": "1"},
        {"k": "v"},
    )
    assert "not valid JSON" in refused(
        router_env, "contacts", "import", write(tmp_path, "x.jsonl", '{"user_id": \n')
    )
    assert "cannot be read" in refused(
        router_env, "contacts", "import", str(tmp_path / "missing.csv")
    )


def test_every_listing_of_records_takes_json(router_env: dict[str, str]) -> None:
    ok(router_env, "users", "add", "alice")
    shift = json.loads(
        ok(
            router_env,
            "schedules",
            "add-shift",
            "primary",
            "--user",
            "alice",
            "--start",
            "2026-01-01T00:00:00Z",
            "--end",
            "2026-01-02T00:00:00Z",
            "--json",
        )
    )
    assert (shift["schedule_id"], shift["user_id"]) == ("primary", "alice")
    [listed_shift] = [
        json.loads(x) for x in ok(router_env, "schedules", "list", "--json").splitlines()
    ]
    assert listed_shift == shift
    ok(router_env, "optout", "add", "--transport", "sms", "--address", "+14155551234")
    assert json.loads(ok(router_env, "optout", "list", "--json")) == {
        "transport": "sms",
        "address": "+14155551234",
    }


def test_an_unmigrated_database_gives_one_line(
    router_env: dict[str, str], empty_database_url: str
) -> None:
    env = {**router_env, "ROUTER_DATABASE_URL": empty_database_url}
    stderr = refused(env, "contacts", "list", code=3)
    assert "router db migrate" in stderr and len(stderr.strip().splitlines()) == 1


def test_search_matches_percent_and_underscore_literally(router_env: dict[str, str]) -> None:
    for user in ("a_b", "axb", "50%off", "500ff"):
        ok(router_env, "users", "add", user)
    add(router_env, "a_b", "email", "a_b@example.com")
    add(router_env, "axb", "email", "axb@example.com")

    def users(search: str) -> list[str]:
        out = ok(router_env, "users", "list", "--search", search, "--json")
        return sorted(json.loads(line)["id"] for line in out.splitlines())

    def values(search: str) -> list[str]:
        out = ok(router_env, "contacts", "list", "--search", search, "--json")
        return sorted(json.loads(line)["value"] for line in out.splitlines())

    assert users("a_b") == ["a_b"]
    assert users("0%") == ["50%off"]
    assert values("a_b@") == ["a_b@example.com"]
    assert values("_") == ["a_b@example.com"]


# -- hostile directory files (issue 17, items 9 and 10) ------------------------------------

# Every character str.splitlines() splits on, other than \n and \r.
SEPARATORS = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei"


def export_to(env: dict[str, str], path: Path, fmt: str) -> bytes:
    ok(env, "contacts", "export", "--format", fmt, "--output", str(path))
    return path.read_bytes()


def test_values_holding_line_separators_export_and_import_back(
    router_env: dict[str, str], tmp_path: Path
) -> None:
    ok(router_env, "users", "add", "alice")
    add(router_env, "alice", "email", "a@example.com", "--label", SEPARATORS)
    add(router_env, "alice", "sms", "+14155551234", "--meta", f"note={SEPARATORS}")
    add(router_env, "alice", "email", "b@example.com", "--label", "plain")
    for fmt in ("csv", "jsonl"):
        exported = export_to(router_env, tmp_path / f"all.{fmt}", fmt)
        assert ok(router_env, "contacts", "import", str(tmp_path / f"all.{fmt}")).strip() == (
            "imported 3 row(s): 0 added, 0 updated, 3 unchanged, 0 skipped as invalid"
        )
        assert export_to(router_env, tmp_path / f"again.{fmt}", fmt) == exported
    ok(router_env, "contacts", "delete", "--user", "alice", "--all")
    assert "3 added" in ok(router_env, "contacts", "import", str(tmp_path / "all.jsonl"))
    methods = {m.value: m for m in listed(router_env)}
    assert methods["a@example.com"].label == SEPARATORS
    assert methods["+14155551234"].metadata == {"note": SEPARATORS}


def test_exported_csv_cells_are_never_formulas_and_import_back_exactly(
    router_env: dict[str, str], tmp_path: Path
) -> None:
    ok(router_env, "users", "add", "alice")
    add(router_env, "alice", "sms", "+14155551234", "--label=-1")
    add(router_env, "alice", "email", "a@example.com", "--label", '=HYPERLINK("http://x")')
    add(router_env, "alice", "email", "b@example.com", "--label", "'@quoted", "--meta", "k=+1")
    add(router_env, "alice", "email", "c@example.com", "--label", "\tTab")
    path = tmp_path / "all.csv"
    exported = export_to(router_env, path, "csv")
    cells = [c for r in csv.reader(io.StringIO(exported.decode(), newline="")) for c in r]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert {"'+14155551234", "'-1", '\'=HYPERLINK("http://x")', "''@quoted", "'\tTab"} <= set(cells)
    assert ok(router_env, "contacts", "import", str(path)).strip() == (
        "imported 4 row(s): 0 added, 0 updated, 4 unchanged, 0 skipped as invalid"
    )
    ok(router_env, "contacts", "delete", "--user", "alice", "--all")
    assert "4 added" in ok(router_env, "contacts", "import", str(path))
    labels = {m.value: m.label for m in listed(router_env)}
    assert labels == {
        "+14155551234": "-1",
        "a@example.com": '=HYPERLINK("http://x")',
        "b@example.com": "'@quoted",
        "c@example.com": "\tTab",
    }


def test_hostile_rows_are_refused_by_line_and_skip_invalid_writes_the_rest(
    router_env: dict[str, str], tmp_path: Path
) -> None:
    ok(router_env, "users", "add", "alice")
    row = '{"user_id": "alice", "transport": "email", "value": "%s@example.com"%s}\n'
    jsonl = write(
        tmp_path,
        "in.jsonl",
        row % ("a", "")
        + row % ("b", ', "metadata": ' + "[" * 100_000 + "]" * 100_000)
        + row % ("c", ', "label": "nul\\u0000"')
        + row % ("d", ', "label": "x\u2028y"'),
    )
    stderr = refused(router_env, "contacts", "import", jsonl)
    assert f"{jsonl}:2: nests JSON arrays or objects too deeply" in stderr
    assert f"{jsonl}:3: label holds a NUL character" in stderr
    assert "RecursionError" not in stderr and re.findall(r"in\.jsonl:(\d+):", stderr) == ["2", "3"]
    assert ok(router_env, "contacts", "import", jsonl, "--skip-invalid").strip() == (
        "imported 2 row(s): 2 added, 0 updated, 0 unchanged, 2 skipped as invalid"
    )

    huge = "x" * 131_073
    path = tmp_path / "in.csv"  # as a spreadsheet saves it: a byte order mark, CRLF
    path.write_bytes(
        (
            "\ufeffuser_id,transport,value,label\r\n"
            "alice,email,e@example.com,\r\n"
            f'alice,email,f@example.com,"{huge}"\r\n'
            "alice,email,g@example.com,ok\r\n"
        ).encode()
    )
    stderr = refused(router_env, "contacts", "import", str(path))
    assert f"{path}:3: a cell is 131,073 characters long, over the 131,072 allowed" in stderr
    assert "field larger than field limit" not in stderr and "user_id" not in stderr
    assert ok(router_env, "contacts", "import", str(path), "--skip-invalid").strip() == (
        "imported 2 row(s): 2 added, 0 updated, 0 unchanged, 1 skipped as invalid"
    )
    assert {m.value for m in listed(router_env)} == {
        f"{c}@example.com" for c in ("a", "d", "e", "g")
    }


# -- addresses (issue 17 item 11, issue 18 item 10) ----------------------------------------

#: Emails accepted before the validator, and phone numbers stored without their extension.
NOT_MAILBOXES = [
    "a@[127.0.0.1]",
    "a,b@example.com",
    "a<b>@example.com",
    "x" * 65 + "@example.com",
    "a@b..com",
    "a@.example.com",
]


def _add(env: dict[str, str], transport: str, value: str) -> list[str]:
    args = ("contacts", "add", "--user", "alice", "--transport", transport, "--value", value)
    return refused(env, *args).strip().splitlines()


@pytest.mark.long
def test_addresses_are_checked_and_stored_in_one_form_on_add_and_import(
    router_env: dict[str, str], tmp_path: Path
) -> None:
    ok(router_env, "users", "add", "alice")
    adding = ("contacts", "add", "--user", "alice", "--transport", "email", "--value")
    refusals = cli_refused_each(router_env, [(*adding, value) for value in NOT_MAILBOXES])
    for value, stderr in zip(NOT_MAILBOXES, refusals, strict=True):
        [line] = stderr.strip().splitlines()
        assert "is not a valid email address (" in line, (value, line)
        assert line.endswith("give it as name@example.com"), line
    [line] = _add(router_env, "sms", "+1 415 555 1234 ext. 77")
    assert line == (
        "router: error: value: '+1 415 555 1234 ext. 77' has an extension (77), which a text "
        "message cannot dial; give the number without it"
    )
    assert listed(router_env) == []

    folded = add(router_env, "alice", "email", "ａｌｉｃｅ@example.com")
    idn = add(router_env, "alice", "email", "Bob@Bücher.de")
    dotted = add(router_env, "alice", "email", "ALİCE@example.org")
    phone = add(router_env, "alice", "sms", "＋１４１５５５５１２３４")
    assert (folded.value, idn.value, dotted.value, phone.value) == (
        "alice@example.com",
        "bob@xn--bcher-kva.de",
        "alİce@example.org",
        "+14155551234",
    )
    for transport, same in (
        ("email", "BOB@xn--bcher-kva.de"),  # the punycode of the stored domain
        ("email", "alİce@example.org"),
        ("sms", "+1４１５５５５１２３４"),  # partly full-width
    ):
        [line] = _add(router_env, transport, same)
        assert "already" in line, (same, line)

    rows = [{"user_id": "alice", "transport": "email", "value": v} for v in NOT_MAILBOXES]
    rows += [
        {"user_id": "alice", "transport": "sms", "value": "+1 415 555 1234 ext. 77"},
        {"user_id": "alice", "transport": "email", "value": "ｃａｒｏｌ@example.com"},
        {"user_id": "alice", "transport": "email", "value": "bob@bücher.de"},  # on file already
    ]
    path = write(tmp_path, "in.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    stderr = refused(router_env, "contacts", "import", path)
    for line in range(1, len(NOT_MAILBOXES) + 1):
        assert f"{path}:{line}: value: " in stderr and "not a valid email address" in stderr
    assert f"{path}:{len(NOT_MAILBOXES) + 1}: value: '+1 415 555 1234 ext. 77' has an " in stderr
    assert ok(router_env, "contacts", "import", path, "--skip-invalid").strip() == (
        f"imported 2 row(s): 1 added, 0 updated, 1 unchanged, {len(NOT_MAILBOXES) + 1} skipped "
        "as invalid"
    )
    assert {m.value for m in listed(router_env, "--transport", "email")} == {
        "alice@example.com",
        "bob@xn--bcher-kva.de",
        "alİce@example.org",
        "carol@example.com",
    }


async def test_an_opt_out_in_the_other_spelling_of_a_domain_applies(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    """contacts.events and `router optout` store the form `contacts add` stores."""
    ok(router_env, "users", "add", "alice")
    unicode_domain = add(router_env, "alice", "email", "alice@bücher.de")
    punycode_domain = add(router_env, "alice", "email", "ops@xn--caf-dma.example")
    assert "opted out: email ops@xn--caf-dma.example" in ok(
        router_env, "optout", "add", "--transport", "email", "--address", "OPS@café.example"
    )
    start_router(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    t = topics(router_env)
    events = router_env["ROUTER_TOPIC_CONTACT_EVENTS"]
    await wait_for_topics(bootstrap, [t["alerts"], events])
    opt_out = {"type": "opt_out", "transport": "email", "address": "ALICE@xn--bcher-kva.de"}
    await produce(bootstrap, events, json.dumps(opt_out).encode())
    for _ in range(100):
        if "alice@xn--bcher-kva.de" in ok(router_env, "optout", "list"):
            break
        await asyncio.sleep(0.1)
    await produce(bootstrap, t["alerts"], alert("idn-1", ["alice"]))
    seen = await collect(
        bootstrap, [t["decisions"], t["email"]], until=lambda s: len(s[t["decisions"]]) >= 2
    )
    reasons = {
        d["contact_method_id"]: d["reason"]
        for d in (json.loads(r.value) for r in seen[t["decisions"]])
    }
    assert reasons == {unicode_domain.id: "opted_out", punycode_domain.id: "opted_out"}
    assert seen[t["email"]] == []
