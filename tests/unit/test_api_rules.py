"""router api's pure parts: token settings, problem texts, ETags."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr

from router.api.context import etag, matches
from router.api.problems import pointer, scrub
from router.directory.models import User
from router.settings import Settings


def test_tokens_are_named_and_write_implies_read() -> None:
    settings = Settings(
        api_read_tokens=SecretStr("ui:r1, r2"),
        api_write_tokens=SecretStr("hr:w1\nw2"),
    )
    assert settings.api_tokens() == {
        "r1": ("ui", False),
        "r2": ("read-2", False),
        "w1": ("hr", True),
        "w2": ("write-2", True),
    }
    assert Settings().api_tokens() == {}


def test_problem_texts_mask_addresses() -> None:
    text = scrub("User 'a' already has alice@example.com, +447911123456 and https://h.example/x")
    assert "alice@example.com" not in text and "+447911123456" not in text
    assert "/x" not in text and "a***@example.com" in text


def test_pointers_name_the_json_field_of_a_cli_flag() -> None:
    assert pointer("--header") == "/webhook_headers"
    assert pointer("value") == "/value"


def test_if_match_compares_etags_of_the_stored_record() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    user = User(id="a", created_at=now, updated_at=now)
    check = matches(etag(user))
    assert check is not None and check(user)
    other = user.model_copy(update={"name": "b"})
    assert not check(other)
    star = matches("*")
    assert star is not None and star(other)
    assert matches(None) is None
