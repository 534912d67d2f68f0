"""The FastAPI application: `create_app()` opens every client in its lifespan and closes them after."""

from __future__ import annotations

import json

from fastapi import FastAPI

from api.config import routes as config_routes
from api.console import mount_console
from api.errors import install_error_handlers
from api.health import metrics as metrics_routes
from api.health import routes as health_routes
from api.lifespan import lifespan_for
from api.lookups import members as member_routes
from api.lookups import routes as lookup_routes
from api.middleware.body_limit import (
    CONFIG_BODY_MAX_BYTES,
    DEFAULT_BODY_MAX_BYTES,
    RequestBodyLimit,
)
from api.middleware.request_context import RequestContext
from api.middleware.request_metrics import RequestMetrics
from api.openapi_errors import ADMIN_ERRORS, LOOKUP_ERRORS
from api.previews import routes as preview_routes
from resources.json_logs import configure_logging
from resources.settings import PROJECT_ROOT, Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging()

    app = FastAPI(
        title="Segmentation API",
        version="1",
        lifespan=lifespan_for(settings),
        # No redirect to the path with or without its trailing slash: Starlette builds it from the
        # client's Host header, so any client could have the API answer a redirect to its own host.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.add_middleware(
        RequestBodyLimit,
        default_max_bytes=DEFAULT_BODY_MAX_BYTES,
        max_bytes_by_prefix={"/v1/segments": CONFIG_BODY_MAX_BYTES, "/v1/segments:preview": CONFIG_BODY_MAX_BYTES},
    )

    app.add_middleware(RequestMetrics)
    app.add_middleware(RequestContext)  # outermost: its request id is bound for everything inside
    # Routes are matched in order: the lookups, the hottest, before the config management ones.
    app.include_router(health_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(lookup_routes.router, prefix="/v1", responses=LOOKUP_ERRORS)
    app.include_router(member_routes.router, prefix="/v1", responses=LOOKUP_ERRORS)
    app.include_router(config_routes.router, prefix="/v1", responses=ADMIN_ERRORS)
    app.include_router(preview_routes.router, prefix="/v1", responses=ADMIN_ERRORS)
    mount_console(app, settings)  # /console/: its routes are left out of the OpenAPI document
    return app


OPENAPI_FILE = PROJECT_ROOT / "docs" / "openapi.json"


def render_openapi() -> str:
    """The OpenAPI document as served at /openapi.json, as `docs/openapi.json` holds it.

    Building it opens no client: the lifespan does not run."""
    return json.dumps(create_app(Settings()).openapi(), indent=2, ensure_ascii=False) + "\n"
