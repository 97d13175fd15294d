"""The README and the docs tell the truth, and a newcomer can walk them.

The README is the front door (what, the two commands, running it, the
guarantees in brief, a map); the tables live in ``docs/``. Every setting,
reason code, DLQ reason and metric is documented where its table lives, with no
stale ones; every page is in the site's navigation; the development page's
module map names every module under ``router/`` and its list of ``make``
targets every target; and every file path the docs name exists.
``mkdocs build --strict`` (``make docs``, part of ``make test``) checks the
links between the pages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.metrics import REGISTRY
from router.routing.decode import REJECT_REASONS
from router.settings import SECRET_SETTINGS, Settings
from schemas import REASONS

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()

#: Variables the docs name that are not settings: how the long test runs are asked for.
TEST_VARIABLES = {"ROUTER_CHAOS_LONG", "ROUTER_FUZZ_EXAMPLES"}


def page(name: str) -> str:
    return (DOCS / name).read_text()


def every_page() -> dict[str, str]:
    """The README and every docs page, by path from the repository root."""
    pages = {"README.md": README}
    pages.update({f"docs/{p.name}": p.read_text() for p in sorted(DOCS.glob("*.md"))})
    return pages


def table_rows(text: str, first_cell: str) -> dict[str, str]:
    """Rows of tables in ``text`` whose first cell is a backticked name matching ``first_cell``."""
    rows = {}
    for match in re.finditer(rf"^\| `({first_cell})` \| (.*) \|$", text, re.MULTILINE):
        rows[match.group(1)] = match.group(2)
    return rows


def table_under(text: str, header: str) -> dict[str, str]:
    """The one table whose header row is ``header``: first cell (unquoted) -> the rest."""
    lines = text.splitlines()
    assert lines.count(header) == 1, f"expected one table headed {header!r}"
    rows = {}
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        match = re.fullmatch(r"\| `([^`]+)` \| (.*) \|", line)
        assert match, f"a row of the table headed {header!r} does not start with a `name`: {line}"
        rows[match.group(1)] = match.group(2)
    return rows


def nav_pages(nav: list[Any]) -> list[str]:
    """Every page named in mkdocs.yml's ``nav``, however deep."""
    found: list[str] = []
    for item in nav:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                found.extend(nav_pages(value) if isinstance(value, list) else [value])
    return found


def test_every_setting_is_documented_with_its_default() -> None:
    documented = table_rows(page("settings.md"), r"ROUTER_[A-Z_]+")
    expected = {f"ROUTER_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert set(documented) == set(expected)
    for name, field in expected.items():
        default = field.default
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        if isinstance(default, float):
            shown = shown.removesuffix(".0")
        cell = f"`{shown}`" if shown else "(empty)"  # `` would show as two backticks
        assert documented[name].startswith(cell), (name, documented[name])


def test_no_page_names_a_setting_that_does_not_exist() -> None:
    settings = {f"ROUTER_{name.upper()}" for name in Settings.model_fields}
    files = {f"ROUTER_{name.upper()}_FILE" for name in SECRET_SETTINGS}
    for path, text in every_page().items():
        for name in re.findall(r"ROUTER_[A-Z0-9_]+(?![A-Z0-9_<])", text):
            if name.endswith("_"):
                continue  # a family: ROUTER_INGEST_*, ROUTER_TOPIC_*, ROUTER_RATE_LIMIT_<...>
            assert name in settings | files | TEST_VARIABLES, f"{path} names {name}"


def test_every_reason_code_is_documented_with_its_meaning_and_no_other() -> None:
    documented = table_under(page("topics-and-schemas.md"), "| Code | Meaning |")
    assert documented == REASONS


def test_every_dlq_reason_is_documented_with_its_meaning_and_no_other() -> None:
    documented = table_under(page("topics-and-schemas.md"), "| `router.dlq.reason` | Meaning |")
    assert documented == REJECT_REASONS


def test_every_metric_is_documented_with_its_type_and_no_other() -> None:
    documented = table_under(page("operating.md"), "| Metric | Type | Labels | Meaning |")
    documented.pop("router_faststream_*")  # FastStream's own, added when the app is built
    # FastStream's middleware registers its own families when a broker is built, which
    # another test in this process may or may not have done: those are the documented
    # wildcard row, whatever this process holds.
    exported = {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in REGISTRY.collect()
        if not family.name.startswith("router_faststream_")
    }
    assert {name: row.split(" | ")[0] for name, row in documented.items()} == exported


def test_every_make_target_is_on_the_development_page() -> None:
    phony = re.search(r"^\.PHONY: (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert phony
    described = page("development.md")
    for target in phony.group(1).split():
        assert f"`make {target}`" in described, target


def test_the_two_commands_come_first() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block


def test_the_readme_is_a_front_door_not_the_manual() -> None:
    lines = README.count("\n")
    assert lines <= 260, f"README.md has {lines} lines: move the detail to a page in docs/"
    for heading in ("## Two commands", "## Running it for real", "## Guarantees", "## The docs"):
        assert heading in README.splitlines(), heading


def test_the_readme_maps_every_docs_page() -> None:
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)\)", README))
    assert linked == {f"docs/{p.name}" for p in DOCS.glob("*.md")}


def test_the_readme_has_one_line_for_each_guarantee() -> None:
    full = page("guarantees.md").split("| Promise | Checked by | Last figures |", 1)[1]
    brief = README.split("| Promise | Checked by |", 1)[1]
    rows = re.compile(r"^\| (?!---)", re.MULTILINE)
    full_rows = len(rows.findall(full.split("\n\n", 1)[0]))
    brief_rows = len(rows.findall(brief.split("\n\n", 1)[0]))
    assert brief_rows == full_rows


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["strict"] is True
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is in the nav twice"
    assert set(listed) == {p.name for p in DOCS.glob("*.md")}


def test_the_module_map_names_every_module_under_router() -> None:
    mapped = set(re.findall(r"^\| `(router/[\w/]+\.py)` \|", page("development.md"), re.M))
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "router").rglob("*.py")}
    missing, gone = sorted(modules - mapped), sorted(mapped - modules)
    assert not missing, f"add to the module map in docs/development.md: {missing}"
    assert not gone, f"in docs/development.md's module map but gone: {gone}"


# A path is a word starting one of the repository's top folders, not inside a URL
# or an absolute path (/etc/router/...), up to a space, quote or closing bracket.
_PATH = re.compile(r"(?<![\w/.@-])((?:router|tests|deploy|bench|schemas|docs)/[\w./-]*[\w/])")


@pytest.mark.parametrize("path", sorted(every_page()))
def test_every_path_a_page_names_exists(path: str) -> None:
    for named in _PATH.findall(every_page()[path]):
        assert (ROOT / named).exists(), f"{path} names {named}, which does not exist"


def test_the_changelog_names_each_kind_of_change_once_per_release() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = re.split(r"^## ", changelog, flags=re.MULTILINE)[1:]
    assert releases and releases[0].startswith("[Unreleased]")
    for release in releases:
        kinds = re.findall(r"^### (\w+)$", release, re.MULTILINE)
        assert len(kinds) == len(set(kinds)), f"{release.splitlines()[0]}: {kinds}"
        assert set(kinds) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
