"""Terminal tables line their columns up and cut long cells."""

from __future__ import annotations

from router.cli.table import render


def test_columns_are_padded_to_the_widest_cell_under_a_rule() -> None:
    out = render(["ID", "VALUE"], [["1", "alice@example.com"], ["22", "b"]])
    assert out.splitlines() == [
        "ID  VALUE",
        "--  -----------------",
        "1   alice@example.com",
        "22  b",
    ]


def test_long_cells_are_cut_with_an_ellipsis() -> None:
    out = render(["V"], [["x" * 60]], max_width=10)
    assert out.splitlines()[2] == "xxxxxxx..."
