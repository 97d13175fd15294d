"""Jobs and decisions made and turned into bytes on the hot path, in one step each. Pure.

The pydantic models in ``schemas`` stay the published contract (JSON Schema,
AsyncAPI); this module only builds and writes them faster:

- :func:`make` builds a model from values that are already valid (they come from
  validated events and directory rows, or from the renderers): the model's field
  list, in its order and with its defaults, is copied once per model into a
  template, and a job is that template updated with the values given. A field a
  model gains (an optional one with a default) is carried without a change here.
- :func:`encode` writes a model's fields with orjson: the same bytes as
  ``model_dump_json()`` (a UTC offset as ``Z``, fields in declaration order,
  nulls written), which ``tests/unit/test_encode.py`` checks for arbitrary events
  and methods. A value orjson refuses (an integer wider than 64 bits) falls back
  to pydantic's writer, so nothing is lost to the shortcut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

M = TypeVar("M", bound=BaseModel)

#: A UTC offset is written ``Z``, as pydantic writes it.
_OPTIONS = orjson.OPT_UTC_Z

_TEMPLATES: dict[type[BaseModel], dict[str, Any]] = {}
_FIELDS_SET: dict[type[BaseModel], set[str]] = {}
_FACTORIES: dict[type[BaseModel], tuple[tuple[str, Callable[[], Any]], ...]] = {}


def _template(model: type[BaseModel]) -> dict[str, Any]:
    template = _TEMPLATES.get(model)
    if template is None:
        template = {
            name: None if info.default is PydanticUndefined else info.default
            for name, info in model.model_fields.items()
        }
        _FACTORIES[model] = tuple(
            (name, info.default_factory)  # type: ignore[misc]
            for name, info in model.model_fields.items()
            if info.default_factory is not None
        )
        _TEMPLATES[model] = template
        # Shared by every instance: the models are frozen, so pydantic never adds to it.
        _FIELDS_SET[model] = set(template)
    return template


def make(model: type[M], values: dict[str, Any]) -> M:
    """An instance of ``model`` holding ``values`` (every required field among them),
    its other fields at their defaults, not validated: the caller's values are.

    What ``model_construct`` does, without its per-field work: the instance's
    ``__dict__`` is the template's copy, in the model's field order, which is also
    what :func:`encode` writes."""
    fields = _template(model).copy()
    fields.update(values)
    for name, factory in _FACTORIES[model]:  # a fresh default each (a dict, a list)
        if name not in values:
            fields[name] = factory()
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", fields)
    object.__setattr__(instance, "__pydantic_fields_set__", _FIELDS_SET[model])
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


def encode(model: BaseModel) -> bytes:
    """``model`` as JSON bytes, equal to ``model.model_dump_json().encode()``."""
    try:
        return orjson.dumps(model.__dict__, option=_OPTIONS)
    except TypeError:  # e.g. an integer wider than 64 bits
        return model.model_dump_json().encode()
