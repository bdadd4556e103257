"""/docs renders Swagger UI from local assets (swagger-ui-dist from npm), offline; the dashboard's security
headers."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import Dashboard, Traffic


def test_docs_render_every_operation_offline(page: Any, dashboard: Dashboard, traffic: Traffic, shot: Any) -> None:
    schema = dashboard.client.get("/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    page.goto(f"{dashboard.base}/docs")
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.locator(".swagger-ui .opblock").count() == operations
    shot(page, "docs")
    assert traffic.outside == []


def test_docs_and_dashboard_assets_are_local_and_the_dashboard_is_locked_down(dashboard: Dashboard) -> None:
    docs = dashboard.client.get("/docs")
    assert docs.status_code == 200 and "https://" not in docs.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert dashboard.client.get(f"/ui/vendor/swagger-ui/{asset}").status_code == 200
    ui = dashboard.client.get("/ui")
    assert ui.status_code == 200 and 'type="module"' in ui.text
    policy = ui.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert ui.headers["x-frame-options"] == "DENY"
    script = dashboard.client.get("/ui/static/js/main.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "content-security-policy" in script.headers
