"""What the client raises: the server's refusals (problem+json), jobs that did not succeed, timeouts."""

from __future__ import annotations

from typing import Any

import httpx

from infoprune_client.schemas import JobOut


class InfoPruneClientError(Exception):
    """Base of everything the client raises on purpose."""


class ApiError(InfoPruneClientError):
    """The server answered with an error (RFC 9457 problem details when it is the InfoPrune API)."""

    def __init__(self, status: int, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.problem = problem or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            detail = str(body["detail"])
            fields = [e for e in body.get("errors") or [] if str(e.get("msg")) not in detail]  # a 422's field errors
            if fields:
                detail += ": " + "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in fields)
            return cls(response.status_code, detail, body)
        return cls(response.status_code, response.text[:500] or response.reason_phrase)


class JobDidNotSucceed(InfoPruneClientError):
    """A waited-for job ended failed or cancelled; ``job`` holds its final state, ``job.error`` the reason."""

    def __init__(self, job: JobOut) -> None:
        reason = f": {job.error}" if job.error else ""
        super().__init__(f"job {job.id} {job.status}{reason}")
        self.job = job


class JobFailed(JobDidNotSucceed):
    pass


class JobCancelled(JobDidNotSucceed):
    pass


class WaitTimeout(InfoPruneClientError):
    """The job did not finish in time; it goes on running on the server."""

    def __init__(self, job_id: str, timeout_s: float) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout_s:g}s (it is still running)")
        self.job_id = job_id


class ArtifactCorrupt(InfoPruneClientError):
    """A downloaded artifact's size or sha256 differs from what the server recorded."""
