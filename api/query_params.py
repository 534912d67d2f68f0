"""Query parameters that take one value, on every route that reads any."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import QueryParams

from api.errors import invalid_field


def one_value_each(query: QueryParams, names: Iterable[str]) -> None:
    """A 422 naming the first of these parameters given more than once. The API repeats only some
    (`segment_type` on lookups, `label`); for the others, FastAPI would silently keep the last."""
    for name in names:
        if len(query.getlist(name)) > 1:
            raise invalid_field(name, "given more than once; this parameter takes one value")
