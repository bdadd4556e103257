"""The dashboard end to end in headless Chromium, offline: sign in with a key, submit a job on a tiny LLaVA
from the form, watch it finish live over SSE, read its report and heatmap, compare jobs of one model."""

from __future__ import annotations

import tempfile
from typing import Any

import httpx
import pytest

from tests.conftest import FAST_CONFIG
from tests.service.helpers import wait_for_job
from tests.ui.conftest import Dashboard, Traffic, sign_in

JOB_TIMEOUT_MS = 180_000
FORM = {
    "source": "tiny-llava",
    "target_flops_ratio": "0.6",
    "gate_steps": "5",
    "recovery_steps": "2",
    "calibration_samples": "8",
    "held_out_samples": "4",
}
MORE_OPTIONS = '{"latency_batch": 1, "latency_repeats": 1, "batch_size": 4}'


def _texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_text_contents()]


def _assert_clean(page: Any, dashboard: Dashboard, traffic: Traffic) -> None:
    """Nothing left the server's origin, the key stayed out of URLs and storage other than the session's,
    no script or CSP error, and no server path reached the page."""
    assert traffic.outside == []
    assert traffic.problems == []
    assert all(dashboard.key not in r.url for r in traffic.requests)
    assert page.evaluate("sessionStorage.getItem('infoprune.apiKey')") == dashboard.key
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    shown = page.evaluate("document.body.textContent")
    assert str(dashboard.data) not in shown and tempfile.gettempdir() not in shown  # model root, work folders


def test_submit_a_job_watch_it_live_and_read_its_report(
    page: Any, dashboard: Dashboard, traffic: Traffic, shot: Any
) -> None:
    sign_in(page, dashboard)
    page.wait_for_selector("#jobs tbody tr")
    shot(page, "jobs")
    page.click("nav >> text=New job")
    for name, value in FORM.items():
        page.fill(f"#submit-job [name={name}]", value)
    page.fill("#submit-job [name=extra]", MORE_OPTIONS)
    shot(page, "form")
    page.click("#submit-job button[type=submit]")
    page.wait_for_url("**/ui#/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#overview [data-field=status] [data-status=succeeded]", timeout=JOB_TIMEOUT_MS)
    page.wait_for_selector("#heatmap")
    shot(page, "job")
    _assert_clean(page, dashboard, traffic)

    # live: the page read the SSE endpoint with the key in the Authorization header, and logged every status
    streams = [r for r in traffic.requests if r.url.endswith(f"/v1/jobs/{job_id}/events?after=0")]
    assert streams and streams[0].headers.get("accept") == "text/event-stream"
    assert streams[0].headers.get("authorization") == f"Bearer {dashboard.key}"
    statuses = _texts(page, "#events tbody [data-status]")
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded"

    headers = dashboard.headers
    job = dashboard.client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert job["config"]["recovery_steps"] == 2 and job["config"]["latency_batch"] == 1  # the form's values
    report = dashboard.client.get(f"/v1/jobs/{job_id}/report", headers=headers).json()
    assert _texts(page, "#parts tbody tr td:first-child") == ["vision", "projector", "language", "total"]
    quality = {row[0]: row[1:] for row in _rows(page, "#quality")}
    cosine = report["fidelity"]["after_recovery"]["cosine"]
    assert quality["cosine"][-1] == f"{cosine:.4f}" and len(quality["cosine"]) == 2  # before and after recovery
    outcome = "kept" if report["recovery"]["kept"] else "discarded"
    assert f"distilled weights {outcome}" in page.locator("#recovery").inner_text()
    assert len(_rows(page, "#latency")) == 2
    assert page.locator("[data-section='Stage timings'] rect.bar").count() == len(report["stages_seconds"])

    # the heatmap: one cell per attention block with kept/num_heads, one per FFN width or rank in the report
    layers = report["heads"]["layers"]
    expected = sorted(f"{len(layer['kept'])}/{layer['num_heads']}" for layer in layers.values())
    assert sorted(_texts(page, ".heatmap .cell[data-row='heads kept'] text")) == expected
    assert {"vision", "language"} <= {caption.split(" ")[0] for caption in _texts(page, ".heatmap figcaption")}
    ffn = report.get("ffn", {})
    ffn_values = len(ffn.get("widths") or {}) + len(ffn.get("ranks") or {})
    assert page.locator(".heatmap .cell:not([data-row='heads kept'])").count() == ffn_values
    if not ffn_values:
        assert "FFN widths and ranks are not in this report." in _texts(page, "#heatmap .note")

    # artifacts: every file listed with a working expiring link (no key needed)
    listing = dashboard.client.get(f"/v1/jobs/{job_id}/artifacts", headers=headers).json()["data"]
    links = page.locator("#artifacts a")
    assert sorted(links.all_text_contents()) == sorted(a["name"] for a in listing)
    manifest = page.locator("#artifacts a", has_text="infoprune.json").get_attribute("href")
    assert httpx.get(manifest, timeout=30).json()["report"]["flops"] == report["flops"]

    page.click("nav >> text=Jobs")
    page.wait_for_selector(f"#jobs tr[data-job='{job_id}'] [data-status=succeeded]")
    shot(page, "jobs-after")
    _assert_clean(page, dashboard, traffic)
    assert dashboard.key not in dashboard.log.read_text()


def _rows(page: Any, table: str) -> list[list[str]]:
    rows = page.locator(f"{table} tbody tr").all()
    return [[c.strip() for c in row.locator("td").all_text_contents()] for row in rows]


def test_the_list_follows_active_jobs_and_compare_plots_quality_against_flops(
    page: Any, dashboard: Dashboard, traffic: Traffic, shot: Any
) -> None:
    config = {**FAST_CONFIG, "scope": ["vision", "language"]}  # no latency: the views cope without speed-ups
    submit = lambda ratio, **more: dashboard.client.post(  # noqa: E731
        "/v1/jobs",
        json={"source": "tiny-llava", "config": {**config, **more, "target_flops_ratio": ratio}},
        headers=dashboard.headers,
    ).json()["id"]
    slow = submit(0.5, gate_steps=100)
    sign_in(page, dashboard)
    row = f"#jobs tr[data-job='{slow}']"
    assert page.get_attribute(f"{row} [data-status]", "data-status") in ("queued", "running")
    page.wait_for_selector(f"{row} [data-status=succeeded]", timeout=JOB_TIMEOUT_MS)  # no reload: live
    assert any(r.url.endswith(f"/v1/jobs/{slow}/events?after=0") for r in traffic.requests)
    assert wait_for_job(dashboard.client, submit(0.8), dashboard.headers, timeout=180)["status"] == "succeeded"

    jobs = dashboard.client.get("/v1/jobs?status=succeeded&limit=100", headers=dashboard.headers).json()["data"]
    kept = []
    for job in jobs:
        flops = dashboard.client.get(f"/v1/jobs/{job['id']}/report", headers=dashboard.headers).json()["flops"]
        kept.append(flops["after"]["total"] / flops["before"]["total"])
    page.click("nav >> text=Compare")
    page.wait_for_selector("#compare-table")
    assert page.locator("#compare-table tbody tr").count() == len(jobs)
    points = page.locator(".scatter circle.point")
    assert sorted(float(p.get_attribute("data-x")) for p in points.all()) == pytest.approx(sorted(kept))
    page.select_option("#compare-metric", "top1")
    assert page.locator(".scatter circle.point").count() == len(jobs)
    shot(page, "compare")
    _assert_clean(page, dashboard, traffic)


def test_a_refused_key_is_not_kept_and_forget_clears_it(page: Any, dashboard: Dashboard, shot: Any) -> None:
    sign_in(page, dashboard, key="ipk_not-a-key")
    page.wait_for_selector("#login .error")
    assert "The API refused this key" in page.text_content("#login .error")
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "refused")
    sign_in(page, dashboard)
    page.wait_for_selector("#jobs")
    page.click("#forget")
    page.wait_for_selector("#login")
    assert page.evaluate("sessionStorage.length") == 0


def test_the_form_shows_a_refusal_and_a_job_can_be_cancelled(page: Any, dashboard: Dashboard, shot: Any) -> None:
    sign_in(page, dashboard)
    page.click("nav >> text=New job")
    page.fill("#submit-job [name=source]", "../outside")
    page.click("#submit-job button[type=submit]")
    page.wait_for_selector("#submit-job .error:not([hidden])")
    assert page.text_content("#submit-job .error").strip()  # the problem's detail
    assert page.url.endswith("#/new")  # no job was created
    shot(page, "refused")

    body = {"source": "tiny-llava", "config": {**FAST_CONFIG, "gate_steps": 5000}}
    job_id = dashboard.client.post("/v1/jobs", json=body, headers=dashboard.headers).json()["id"]
    page.goto(f"{dashboard.base}/ui#/jobs/{job_id}")
    page.click("#cancel")
    page.wait_for_selector("#overview [data-field=status] [data-status=cancelled]", timeout=JOB_TIMEOUT_MS)
    page.wait_for_selector("#report >> text=No report: the job cancelled.")
    assert dashboard.client.get(f"/v1/jobs/{job_id}", headers=dashboard.headers).json()["status"] == "cancelled"
