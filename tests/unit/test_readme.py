"""The README tells the truth: every setting, reason code and DLQ reason, and no stale ones."""

from __future__ import annotations

import re
from pathlib import Path

from router.routing.decode import REJECT_REASONS
from router.settings import Settings
from schemas import REASONS

README = (Path(__file__).parents[2] / "README.md").read_text()


def table_rows(first_cell: str) -> dict[str, str]:
    """Rows of README tables whose first cell is a backticked name matching ``first_cell``."""
    rows = {}
    for match in re.finditer(rf"^\| `({first_cell})` \| (.*) \|$", README, re.MULTILINE):
        rows[match.group(1)] = match.group(2)
    return rows


def test_every_setting_is_documented_with_its_default() -> None:
    documented = table_rows(r"ROUTER_[A-Z_]+")
    expected = {f"ROUTER_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert set(documented) == set(expected)
    for name, field in expected.items():
        default = field.default
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        if isinstance(default, float):
            shown = shown.removesuffix(".0")
        assert documented[name].startswith(f"`{shown}`"), (name, documented[name])


def test_every_reason_code_is_documented_with_its_meaning() -> None:
    documented = table_rows("[a-z_]+")
    for code, meaning in {**REASONS, **REJECT_REASONS}.items():
        assert documented.get(code) == meaning, code


def test_the_two_commands_come_first() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block
