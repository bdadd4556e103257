"""``Client``: submit a compression job, follow it, fetch its report and artifacts.

Every call is retried on connection errors, timeouts, 429 and 503 (honouring ``Retry-After``); a
submission carries an idempotency key, so a retried submission never creates a second job.
"""

from __future__ import annotations

import builtins
import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from infoprune_client import sse, transfer
from infoprune_client.errors import ApiError, ArtifactCorrupt, JobCancelled, JobFailed, WaitTimeout
from infoprune_client.retry import RETRY_STATUSES, ChecksumMismatch, RetryableStatus, retrying
from infoprune_client.schemas import (
    ArtifactList,
    ArtifactOut,
    EventOut,
    EventPage,
    JobOut,
    JobPage,
    JobReport,
    ModelOut,
    StatusName,
)

M = TypeVar("M", bound=BaseModel)
ProgressCallback = Callable[[EventOut], None]
_MODEL_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# a stream that breaks off mid-way: resumed after the last event received (Last-Event-ID)
_DROPPED = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout)


class _StreamEnded(Exception):
    """The server closed an event stream without its final ``end`` event."""


class Client:
    """A client of one InfoPrune server, authenticated as one tenant (its API key)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        attempts: int = 8,
        max_wait_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts, self.max_wait_s = attempts, max_wait_s
        headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "infoprune-client"}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)
        # artifact URLs are presigned: they get no API key (they may point at another host)
        self._files = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=True)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._files.close()

    # -- jobs -----------------------------------------------------------------------------------
    def submit(
        self,
        source: str,
        config: Mapping[str, Any] | BaseModel,
        *,
        device_class: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobOut:
        """Submit a job. ``config`` is the job's ``CompressionOptions`` (a budget at least: e.g.
        ``{"target_flops_ratio": 0.5}``). A fresh idempotency key is used unless one is given: pass your
        own (say, a pipeline run id) to make a re-run of the step find the job it submitted before."""
        options = config.model_dump(exclude_unset=True) if isinstance(config, BaseModel) else dict(config)
        body: dict[str, Any] = {"source": source, "config": options}
        if device_class is not None:
            body["device_class"] = device_class
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        key = idempotency_key or f"infoprune-client-{uuid.uuid4().hex}"
        response = self._call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
        return JobOut.model_validate_json(response.content)

    def get(self, job_id: str) -> JobOut:
        return self._model(JobOut, "GET", f"/v1/jobs/{job_id}")

    def list(self, *, status: StatusName | None = None, page_size: int = 100) -> Iterator[JobOut]:
        """This tenant's jobs, newest first, page after page."""
        params: dict[str, Any] = {"limit": page_size, **({"status": status} if status else {})}
        while True:
            page = self._model(JobPage, "GET", "/v1/jobs", params=params)
            yield from page.data
            if page.next_cursor is None:
                return
            params["cursor"] = page.next_cursor

    def cancel(self, job_id: str) -> JobOut:
        return self._model(JobOut, "POST", f"/v1/jobs/{job_id}/cancel")

    def events(
        self, job_id: str, *, after: int = 0, follow: bool = True, deadline: float | None = None
    ) -> Iterator[EventOut]:
        """The job's events after event ``after``. ``follow``: a live stream (server-sent events) that
        ends when the job has finished, and resumes where it broke off (``Last-Event-ID``) when the
        connection drops. ``deadline`` (``time.monotonic()``): raise WaitTimeout past it."""
        if not follow:
            yield from self._event_pages(job_id, after)
            return
        cursor, drops = after, 0
        while True:
            try:
                for event in self._stream(job_id, cursor, deadline):
                    cursor, drops = event.id, 0
                    yield event
                return
            except (*_DROPPED, _StreamEnded):
                drops += 1
                if drops >= self.attempts:
                    raise
                time.sleep(min(2.0**drops / 4, self.max_wait_s))

    def wait(
        self, job_id: str, *, timeout_s: float | None = None, on_progress: ProgressCallback | None = None
    ) -> JobOut:
        """Follow the job until it ends; returns it when it succeeded. Raises JobFailed or JobCancelled
        (with the server's reason in ``.job.error``), or WaitTimeout after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            for event in self.events(job_id, deadline=deadline):
                if on_progress is not None:
                    on_progress(event)
        except WaitTimeout:
            raise WaitTimeout(job_id, timeout_s or 0.0) from None
        job = self.get(job_id)
        if job.status == "failed":
            raise JobFailed(job)
        if job.status == "cancelled":
            raise JobCancelled(job)
        return job

    def report(self, job_id: str) -> JobReport:
        """The compression report of a succeeded job."""
        return self._model(JobReport, "GET", f"/v1/jobs/{job_id}/report")

    def artifacts(self, job_id: str) -> builtins.list[ArtifactOut]:
        return self._model(ArtifactList, "GET", f"/v1/jobs/{job_id}/artifacts").data

    def download(self, job_id: str, dest: str | Path) -> builtins.list[Path]:
        """Every artifact of a succeeded job into ``dest``: each checked against its size and sha256,
        and moved into place only once all have arrived intact (``dest`` is replaced file by file when it
        exists). Returns the files' paths."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        try:
            artifacts = self.artifacts(job_id)
            names = [transfer.safe_name(a.name) for a in artifacts]
            for index, name in enumerate(names):
                try:
                    self._fetch(artifacts[index], staging / name)
                except transfer.LinkExpired:  # the links expired while earlier files downloaded
                    artifacts = self.artifacts(job_id)
                    self._fetch(artifacts[index], staging / name)
            return transfer.install(staging, dest, names)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- models ---------------------------------------------------------------------------------
    def upload(self, path: str | Path, *, name: str | None = None) -> ModelOut:
        """Upload a model folder (packed as tar.gz) or archive; use the result's ``source`` in a job."""
        path = Path(path)
        model_name = _MODEL_NAME.sub("-", name or path.name.split(".")[0]).strip("-")[:200] or "model"
        with transfer.model_archive(path) as (archive, content_type):

            def send() -> httpx.Response:
                with archive.open("rb") as body:
                    return self._send(
                        "POST",
                        "/v1/models",
                        params={"name": model_name},
                        content=body,
                        headers={"Content-Type": content_type},
                    )

            response = self._retrying()(send)
        return ModelOut.model_validate_json(response.content)

    # -- plumbing -------------------------------------------------------------------------------
    def _retrying(self) -> Any:
        return retrying(self.attempts, self.max_wait_s)

    def _fetch(self, artifact: ArtifactOut, target: Path) -> None:
        try:
            self._retrying()(transfer.fetch, self._files, artifact, target)
        except ChecksumMismatch as exc:
            raise ArtifactCorrupt(f"{exc} (after {self.attempts} tries)") from exc
        except RetryableStatus as exc:
            raise ApiError.from_response(exc.response) from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One try: 429/503 raise RetryableStatus (retried), other errors ApiError."""
        response = self._http.request(method, path, **kwargs)
        if response.status_code in RETRY_STATUSES:
            raise RetryableStatus(response)
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response: httpx.Response = self._retrying()(self._send, method, path, **kwargs)
        except RetryableStatus as exc:  # still busy after every try
            raise ApiError.from_response(exc.response) from exc
        return response

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate_json(self._call(method, path, **kwargs).content)

    def _event_pages(self, job_id: str, after: int) -> Iterator[EventOut]:
        while True:
            page = self._model(EventPage, "GET", f"/v1/jobs/{job_id}/events", params={"after": after, "limit": 1000})
            yield from page.data
            if not page.data:
                return
            after = page.next_after

    def _open_stream(self, job_id: str, after: int) -> httpx.Response:
        request = self._http.build_request(
            "GET",
            f"/v1/jobs/{job_id}/events",
            headers={"Accept": "text/event-stream", "Last-Event-ID": str(after)},
        )
        response = self._http.send(request, stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            if response.status_code in RETRY_STATUSES:
                raise RetryableStatus(response)
            raise ApiError.from_response(response)
        return response

    def _stream(self, job_id: str, after: int, deadline: float | None) -> Iterator[EventOut]:
        try:
            response = self._retrying()(self._open_stream, job_id, after)
        except RetryableStatus as exc:
            raise ApiError.from_response(exc.response) from exc
        try:
            for message in sse.messages(response.iter_lines()):
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeout(job_id, 0.0)
                if message is None:
                    continue
                if message.event == "end":
                    return
                yield EventOut.model_validate(json.loads(message.data))
        finally:
            response.close()
        raise _StreamEnded(job_id)
