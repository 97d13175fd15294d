"""The OpenAPI 3.1 document of ``router api``, from FastAPI's own generator.

``python -m router.openapi`` (part of ``make schemas``) writes
``schemas/openapi.json``; ``tests/unit/test_openapi.py`` fails while it is stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from router.api.service import openapi_document

PATH = Path(__file__).parents[1] / "schemas" / "openapi.json"


def render() -> str:
    """The document as committed: sorted keys, two-space indent, newline-terminated."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Rewrite ``schemas/openapi.json``."""
    PATH.write_text(render())
    print(f"wrote {PATH.relative_to(PATH.parents[1])}")


if __name__ == "__main__":
    main()
