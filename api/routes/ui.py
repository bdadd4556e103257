"""The platform dashboard at /ui (static HTML and ES modules, no build step) and /docs with Swagger UI
from the local swagger-ui-dist npm package (``api/ui/package.json``, installed by scripts/setup_ui.sh),
so both work without internet. Create the app with ``docs_url=None`` and call ``install``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
STATIC_DIR = UI_DIR / "static"
SWAGGER_DIR = UI_DIR / "node_modules" / "swagger-ui-dist"
SWAGGER_URL = "/ui/vendor/swagger-ui"

# The dashboard runs only its own scripts and talks only to this API; nothing may frame it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

router = APIRouter(include_in_schema=False)


@router.get("/ui")
def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{SWAGGER_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_URL}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_URL}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # the default badge calls an outside validator
    )


async def _security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    path = request.url.path
    dashboard = path == "/ui" or path.startswith("/ui/")
    if dashboard or path == "/docs":
        response.headers.update(HEADERS)
    if dashboard:
        response.headers["Content-Security-Policy"] = CSP
    return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui")
    # check_dir=False: without the npm install the app still starts; /docs then has no assets (404)
    app.mount(SWAGGER_URL, StaticFiles(directory=SWAGGER_DIR, check_dir=False), name="swagger-ui")
    app.middleware("http")(_security_headers)
