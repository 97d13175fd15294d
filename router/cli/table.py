"""Plain-text tables for a terminal. Pure."""

from __future__ import annotations

from collections.abc import Sequence


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], max_width: int = 48) -> str:
    """Columns padded to their widest cell (cut at ``max_width``), a rule under the header."""
    cells = [[_cut(c, max_width) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
