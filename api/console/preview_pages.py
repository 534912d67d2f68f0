"""A preview from the segment form: the exact member count that the parameters typed would give,
computed by the platform (a Dagster run), shown as it progresses.

With htmx, the form's Preview button posts the form here and the answer (a fragment) replaces the
preview panel; while the preview is queued or running, the fragment asks again every second. The
fields the preview checks are sent back too (out of band), with the API's errors beside them.
Without a script, the button posts the form, and a page of its own refreshes itself until done.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.console.form_input import form_of
from api.console.forms import PARTITION, FormErrors, errors_beside, param_fields, params_from
from api.console.rendering import ConsoleRoute, is_htmx, render, see_other
from api.console.segment_types import segment_type_named
from api.console.sessions import Reader, SignedIn, Writer, require_admin
from api.errors import InvalidInput, invalid_field
from api.previews.service import Previews
from api.state import State

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


@router.post("/previews")
async def request_preview(request: Request, session: Writer, state: State) -> Response:
    form = await form_of(request)
    segment_type = segment_type_named(form.get("segment_type", ""))
    fields = [*param_fields(segment_type["params_schema"]), PARTITION] if segment_type else [PARTITION]
    try:
        if segment_type is None:
            raise invalid_field("segment_type", "unknown segment type")
        preview = await Previews(state).request(
            segment_type["name"], params_from(fields[:-1], form), form.get("partition", "").strip() or None, session.key
        )
    except InvalidInput as error:
        errors = errors_beside(error, [f.name for f in fields])
        return _panel(request, session, None, errors, fields=fields, values=form)
    if not is_htmx(request):
        return see_other(f"/console/previews/{preview['preview_id']}")
    return _panel(request, session, preview, FormErrors(), fields=fields, values=form)


@router.get("/previews/{preview_id}")
async def preview_state(request: Request, preview_id: str, session: Reader, state: State) -> Response:
    require_admin(session)
    return _panel(request, session, await Previews(state).get(preview_id), FormErrors())


def _panel(
    request: Request,
    session: SignedIn,
    preview: dict[str, Any] | None,
    errors: FormErrors,
    *,
    fields: list[Any] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    """The preview panel: a fragment for htmx (which swaps in only a 2xx answer: the panel says
    what went wrong), or a page of its own."""
    htmx = is_htmx(request)
    return render(
        request,
        "preview_fragment.html" if htmx else "preview_page.html",
        session,
        preview=preview,
        errors=errors,
        fields=fields or [],
        values=values or {},
        focus=None,
    )
