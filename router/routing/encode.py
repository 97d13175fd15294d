"""Jobs and decisions made and turned into bytes on the hot path, in one step each. Pure.

The pydantic models in ``schemas`` stay the published contract (JSON Schema,
AsyncAPI); this module only builds and writes them faster:

- :func:`make` builds a model from values that are already valid (they come from
  validated events and directory rows, or from the renderers): the model's field
  list, in its order and with its defaults, is copied once per model into a
  :func:`template`, and an instance is that template's copy updated with the values
  given, in a :func:`shell`. The hot path fills a template's copy itself and calls
  :func:`shell`. A field a model gains (an optional one with a default) is carried
  without a change here.
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
#: The models shell() may make (a template made, no default factory): their fields set.
_SHELLS: dict[type[BaseModel], set[str]] = {}

# The slots every pydantic model has besides its ``__dict__``, set as model_construct
# sets them, by their descriptors: faster than object.__setattr__ by name.
_SLOTS = BaseModel.__dict__
_set_fields_set = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra = _SLOTS["__pydantic_extra__"].__set__
_set_private = _SLOTS["__pydantic_private__"].__set__
_set_dict = object.__setattr__


def template(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s fields in declaration order, each at its default (None when it has
    none, or a factory): copied, then filled, it is an instance's ``__dict__``
    (:func:`shell`). Not to be changed in place."""
    found = _TEMPLATES.get(model)
    if found is None:
        found = {
            name: None if info.default is PydanticUndefined else info.default
            for name, info in model.model_fields.items()
        }
        _FACTORIES[model] = tuple(
            (name, info.default_factory)  # type: ignore[misc]
            for name, info in model.model_fields.items()
            if info.default_factory is not None
        )
        _TEMPLATES[model] = found
        # Shared by every instance: the models are frozen, so pydantic never adds to it.
        _FIELDS_SET[model] = set(found)
        if not _FACTORIES[model]:
            _SHELLS[model] = _FIELDS_SET[model]
    return found


def shell(model: type[M], fields: dict[str, Any]) -> M:
    """An instance of ``model`` whose ``__dict__`` is ``fields``: a copy of
    :func:`template` with every required field filled, not validated: the caller's
    values are.

    What ``model_construct`` does, without its per-field work; :func:`encode`
    writes ``fields`` in their order, the model's. A model with a default factory is
    refused (its fresh default is :func:`make`'s to give), and so is one whose
    template was never made (``fields`` cannot be a copy of it)."""
    fields_set = _SHELLS.get(model)  # the one look-up shell() makes for a model
    if fields_set is None:
        raise TypeError(f"{model.__name__}: fill a copy of template() first, or use make()")
    instance = object.__new__(model)
    _set_dict(instance, "__dict__", fields)
    _set_fields_set(instance, fields_set)
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def _instance(model: type[M], fields: dict[str, Any]) -> M:
    instance = object.__new__(model)
    _set_dict(instance, "__dict__", fields)
    _set_fields_set(instance, _FIELDS_SET[model])
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def make(model: type[M], values: dict[str, Any]) -> M:
    """An instance of ``model`` holding ``values`` (every required field among them),
    its other fields at their defaults, not validated: the caller's values are."""
    fields = template(model).copy()
    fields.update(values)
    for name, factory in _FACTORIES[model]:  # a fresh default each (a dict, a list)
        if name not in values:
            fields[name] = factory()
    return _instance(model, fields)


def replaced(instance: M, values: dict[str, Any]) -> M:
    """A copy of ``instance`` with ``values`` in place of its own, every field set (as
    :func:`make` gives), not validated: both are. Cheaper than :func:`make` of the
    instance's fields and ``values``, which copies them twice."""
    model = type(instance)
    template(model)  # its fields set, shared
    fields = instance.__dict__.copy()
    fields.update(values)
    return _instance(model, fields)


def encode(model: BaseModel) -> bytes:
    """``model`` as JSON bytes, equal to ``model.model_dump_json().encode()``."""
    try:
        return orjson.dumps(model.__dict__, option=_OPTIONS)
    except TypeError:  # e.g. an integer wider than 64 bits
        return model.model_dump_json().encode()


def encode_fields(model: type[BaseModel], fields: dict[str, Any]) -> bytes:
    """:func:`encode` of the ``model`` whose ``__dict__`` ``fields`` would be (every field,
    in the model's order), without making it."""
    try:
        return orjson.dumps(fields, option=_OPTIONS)
    except TypeError:
        template(model)  # the model's fields set, for the instance
        return _instance(model, fields).model_dump_json().encode()
