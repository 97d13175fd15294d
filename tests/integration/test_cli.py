"""The directory commands: clear refusals, nothing half-written, JSON for scripts."""

from __future__ import annotations

import json

from router.directory import ContactMethod
from tests.integration.conftest import run_cli


def methods(env: dict[str, str]) -> list[str]:
    import asyncio

    from router.store import PgStore

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
