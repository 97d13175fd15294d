"""The directory commands: clear refusals, nothing half-written, JSON for scripts."""

from __future__ import annotations

import json

import pytest

from router.directory.models import ContactMethod
from tests.integration.conftest import add_contact, run_cli


def methods(env: dict[str, str]) -> list[str]:
    import asyncio

    from router.db.store import PgStore

    async def read() -> list[str]:
        store = await PgStore.connect(env["ROUTER_DATABASE_URL"])
        try:
            return [m.value for m in (await store.directory_for(["alice"])).methods_of("alice")]
        finally:
            await store.close()

    return asyncio.run(read())


def test_migrate_applies_then_reports_up_to_date(
    router_env: dict[str, str], empty_database_url: str
) -> None:
    env = {**router_env, "ROUTER_DATABASE_URL": empty_database_url}
    first = run_cli(env, "db", "migrate")
    assert first.returncode == 0 and first.stdout.startswith("applied: 0001_directory")
    again = run_cli(env, "db", "migrate")
    assert again.returncode == 0 and again.stdout.strip() == "database is up to date"


def test_contacts_add_json_prints_the_stored_method(router_env: dict[str, str]) -> None:
    assert run_cli(router_env, "users", "add", "alice").returncode == 0
    done = run_cli(
        router_env,
        "contacts",
        "add",
        "--user",
        "alice",
        "--transport",
        "sms",
        "--value",
        "(415) 555-1234",
        "--region",
        "US",
        "--label",
        "mobile",
        "--primary",
        "--verified",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    method = ContactMethod.model_validate_json(done.stdout)
    assert (method.value, method.label, method.is_primary, method.verified) == (
        "+14155551234",
        "mobile",
        True,
        True,
    )


def test_contacts_add_plain_output_names_the_id(router_env: dict[str, str]) -> None:
    run_cli(router_env, "users", "add", "alice")
    done = run_cli(
        router_env,
        "contacts",
        "add",
        "--user",
        "alice",
        "--transport",
        "email",
        "--value",
        "A@Example.com",
    )
    assert done.returncode == 0
    assert done.stdout.startswith("added ") and "a@example.com" in done.stdout


def test_an_invalid_phone_is_refused_with_a_fix_and_nothing_is_written(
    router_env: dict[str, str],
) -> None:
    run_cli(router_env, "users", "add", "alice")
    done = run_cli(
        router_env,
        "contacts",
        "add",
        "--user",
        "alice",
        "--transport",
        "sms",
        "--value",
        "555-1234",
        "--region",
        "US",
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "router: error: value: '555-1234' is not a valid phone number for region US; give it "
        "in international form, e.g. +14155551234"
    )
    assert methods(router_env) == []


def test_refusals_are_one_line_without_traceback(router_env: dict[str, str]) -> None:
    run_cli(router_env, "users", "add", "alice")
    cases = [
        (["users", "add", "alice"], "already exists"),
        (["users", "add", "bob", "--timezone", "Mars/Olympus"], "IANA time zone"),
        (
            [
                "contacts",
                "add",
                "--user",
                "ghost",
                "--transport",
                "email",
                "--value",
                "g@example.com",
            ],
            "does not exist",
        ),
        (
            ["contacts", "add", "--user", "alice", "--transport", "email", "--value", "nope"],
            "not a valid email address",
        ),
        (
            ["contacts", "add", "--user", "alice", "--transport", "webhook", "--value", "ftp://x"],
            "http(s) URL",
        ),
        (
            [
                "contacts",
                "add",
                "--user",
                "alice",
                "--transport",
                "email",
                "--value",
                "a@example.com",
                "--header",
                "X:1",
            ],
            "only to --transport webhook",
        ),
    ]
    for args, message in cases:
        done = run_cli(router_env, *args)
        assert done.returncode != 0, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert methods(router_env) == []


def test_a_duplicate_method_is_refused_naming_the_existing_id(router_env: dict[str, str]) -> None:
    run_cli(router_env, "users", "add", "alice")
    first = json.loads(
        run_cli(
            router_env,
            "contacts",
            "add",
            "--user",
            "alice",
            "--transport",
            "email",
            "--value",
            "a@example.com",
            "--json",
        ).stdout
    )
    again = run_cli(
        router_env,
        "contacts",
        "add",
        "--user",
        "alice",
        "--transport",
        "email",
        "--value",
        "A@EXAMPLE.COM",
    )
    assert again.returncode == 1 and first["id"] in again.stderr


def test_a_database_that_is_down_gives_one_line(router_env: dict[str, str]) -> None:
    env = {**router_env, "ROUTER_DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/router"}
    done = run_cli(env, "users", "add", "alice")
    assert done.returncode == 3
    assert "Cannot use PostgreSQL" in done.stderr and "pw" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_setting_names_the_variable(router_env: dict[str, str]) -> None:
    done = run_cli({**router_env, "ROUTER_TOPIC_PARTITIONS": "many"}, "db", "migrate")
    assert done.returncode == 2
    assert "ROUTER_TOPIC_PARTITIONS" in done.stderr and "Traceback" not in done.stderr


# -- rule settings (issue: routing rules) ------------------------------------------------


def add_method(env: dict[str, str], transport: str, value: str, *extra: str) -> dict[str, object]:
    return add_contact(env, "alice", transport, value, *extra).model_dump(mode="json")


def test_user_rule_settings_round_trip_as_json(router_env: dict[str, str]) -> None:
    done = run_cli(
        router_env,
        "users",
        "add",
        "alice",
        "--timezone",
        "Europe/Berlin",
        "--quiet-hours",
        "22:00-07:00",
        "--quiet-bypass",
        "error",
        "--channel-order",
        "email,sms",
        "--delivery-mode",
        "preferred",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    user = json.loads(done.stdout)
    assert (user["quiet_hours_start"], user["quiet_hours_end"], user["quiet_bypass"]) == (
        "22:00:00",
        "07:00:00",
        "error",
    )
    assert (user["channel_order"], user["delivery_mode"]) == (["email", "sms"], "preferred")
    cleared = json.loads(
        run_cli(
            router_env,
            "users",
            "update",
            "alice",
            "--no-quiet-hours",
            "--delivery-mode",
            "all",
            "--json",
        ).stdout
    )
    assert cleared["quiet_hours_start"] is None and cleared["delivery_mode"] == "all"


def test_making_a_method_primary_clears_the_other_primary(router_env: dict[str, str]) -> None:
    run_cli(router_env, "users", "add", "alice")
    first = add_method(router_env, "sms", "+14155551234", "--primary")
    second = add_method(router_env, "sms", "+14155551235")
    done = run_cli(router_env, "contacts", "update", str(second["id"]), "--primary", "--json")
    assert json.loads(done.stdout)["is_primary"] is True
    again = run_cli(router_env, "contacts", "update", str(first["id"]), "--label", "old", "--json")
    assert json.loads(again.stdout)["is_primary"] is False


def test_mute_until_and_unmute(router_env: dict[str, str]) -> None:
    run_cli(router_env, "users", "add", "alice")
    mid = str(add_method(router_env, "email", "a@example.com")["id"])
    muted = json.loads(
        run_cli(
            router_env, "contacts", "mute", mid, "--until", "2999-01-01T00:00:00Z", "--json"
        ).stdout
    )
    assert muted["mute_until"].startswith("2999-01-01") and muted["muted"] is False
    forever = json.loads(run_cli(router_env, "contacts", "mute", mid, "--json").stdout)
    assert forever["muted"] is True and forever["mute_until"] is None
    cleared = json.loads(run_cli(router_env, "contacts", "unmute", mid, "--json").stdout)
    assert cleared["muted"] is False and cleared["mute_until"] is None


def test_suppress_and_min_severity_settings(router_env: dict[str, str]) -> None:
    run_cli(router_env, "users", "add", "alice")
    mid = str(add_method(router_env, "email", "a@example.com")["id"])
    done = json.loads(
        run_cli(
            router_env,
            "contacts",
            "update",
            mid,
            "--suppress",
            "up,first",
            "--min-severity",
            "error",
            "--disabled",
            "--json",
        ).stdout
    )
    assert (done["suppress_up"], done["suppress_first"], done["suppress_down"]) == (
        True,
        True,
        False,
    )
    assert done["min_severity"] == "error" and done["disabled"] is True
    undone = json.loads(
        run_cli(
            router_env,
            "contacts",
            "update",
            mid,
            "--no-suppress",
            "--min-severity",
            "none",
            "--enabled",
            "--json",
        ).stdout
    )
    assert not any(undone[f"suppress_{k}"] for k in ("up", "down", "first", "diagnostic", "all"))
    assert undone["min_severity"] is None and undone["disabled"] is False


def test_schedules_and_opt_outs_are_listed(router_env: dict[str, str]) -> None:
    run_cli(router_env, "users", "add", "alice")
    done = run_cli(
        router_env,
        "schedules",
        "add-shift",
        "primary",
        "--user",
        "alice",
        "--start",
        "2026-01-01T00:00:00Z",
        "--end",
        "2026-01-08T00:00:00+00:00",
    )
    assert done.returncode == 0 and done.stdout.startswith("added shift")
    listing = run_cli(router_env, "schedules", "list").stdout
    assert "primary  alice  2026-01-01T00:00:00+00:00 -> 2026-01-08T00:00:00+00:00" in listing
    assert (
        run_cli(
            router_env, "optout", "add", "--transport", "email", "--address", "A@Example.com"
        ).stdout.strip()
        == "opted out: email a@example.com"
    )
    assert run_cli(router_env, "optout", "list").stdout.strip() == "email  a@example.com"
    assert (
        "opted in"
        in run_cli(
            router_env, "optout", "remove", "--transport", "email", "--address", "a@example.com"
        ).stdout
    )
    assert run_cli(router_env, "optout", "list").stdout.strip() == ""


@pytest.mark.long
def test_rule_setting_refusals_are_one_line_and_change_nothing(router_env: dict[str, str]) -> None:
    run_cli(router_env, "users", "add", "alice")
    mid = str(add_method(router_env, "email", "a@example.com")["id"])
    cases = [
        (["users", "update", "alice", "--quiet-hours", "22-7"], "HH:MM-HH:MM"),
        (["users", "update", "alice", "--quiet-hours", "07:00-07:00"], "different times"),
        (["users", "update", "alice", "--channel-order", "sms,fax"], "sms, email and webhook"),
        (["users", "update", "alice", "--channel-order", "sms,sms"], "at most once"),
        (["users", "update", "alice"], "at least one setting"),
        (["users", "update", "ghost", "--delivery-mode", "all"], "does not exist"),
        (["contacts", "update", mid, "--suppress", "sideways"], "up, down, first"),
        (["contacts", "update", "not-an-id", "--disabled"], "does not exist"),
        (["contacts", "mute", mid, "--until", "2001-01-01T00:00:00Z"], "not in the future"),
        (["contacts", "mute", mid, "--until", "tomorrow"], "ISO 8601"),
        (["contacts", "mute", mid, "--until", "2999-01-01T00:00:00"], "offset"),
        (
            [
                "schedules",
                "add-shift",
                "s",
                "--user",
                "alice",
                "--start",
                "2026-01-02T00:00:00Z",
                "--end",
                "2026-01-01T00:00:00Z",
            ],
            "must be after --start",
        ),
        (
            [
                "schedules",
                "add-shift",
                "s",
                "--user",
                "ghost",
                "--start",
                "2026-01-01T00:00:00Z",
                "--end",
                "2026-01-02T00:00:00Z",
            ],
            "does not exist",
        ),
        (["optout", "add", "--transport", "sms", "--address", "12"], "not a valid phone number"),
    ]
    for args, message in cases:
        done = run_cli(router_env, *args)
        assert done.returncode != 0, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert run_cli(router_env, "schedules", "list").stdout == ""
    method = json.loads(run_cli(router_env, "contacts", "unmute", mid, "--json").stdout)
    assert not method["suppress_up"] and method["mute_until"] is None
