"""``infoprune jobs ...`` and ``infoprune models upload``: the API client for pipeline steps.

Registered on the ``infoprune`` console script through the ``infoprune.commands`` entry-point group.
The server and key come from ``INFOPRUNE_API_URL`` (default http://127.0.0.1:8000) and
``INFOPRUNE_API_KEY``. Exit status: 0 when the request, or the job followed to its end, succeeded;
1 when the job failed or was cancelled, or the server refused the request; 2 for a usage or
configuration error; 3 when ``--timeout`` passed first (the job goes on running).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from infoprune_client.client import Client
from infoprune_client.errors import ApiError, InfoPruneClientError, JobDidNotSucceed, WaitTimeout
from infoprune_client.schemas import EventOut, JobOut

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
Command = Callable[[argparse.Namespace, Client], int]


class UsageError(Exception):
    pass


def register(subparsers: Any) -> None:
    jobs = subparsers.add_parser(
        "jobs", help="submit, follow and fetch compression jobs on a server (INFOPRUNE_API_URL, INFOPRUNE_API_KEY)"
    )
    commands = jobs.add_subparsers(dest="jobs_command", required=True)

    submit = _command(commands, "submit", "submit a job (and with --wait follow it to its end)", cmd_submit)
    submit.add_argument("source", help="model on the server (name in its model root, s3://, owner/name, upload:<id>)")
    submit.add_argument("--target-flops", type=float, help="fraction of the scope's FLOPs to keep, e.g. 0.5")
    submit.add_argument("--config", help="more options: a JSON object, or @file holding one (see CompressionOptions)")
    submit.add_argument("--device-class", help="server device class (default: the server's)")
    submit.add_argument("--webhook-url", help="called when the job ends (Standard Webhooks signature)")
    submit.add_argument(
        "--idempotency-key", help="resubmitting with the same key returns the first job (default: a new key)"
    )
    submit.add_argument("--upload", action="store_true", help="SOURCE is a local model folder or archive: upload it")
    _waiting(submit, wait_flag=True)

    wait = _command(commands, "wait", "follow a job to its end", cmd_wait)
    wait.add_argument("job_id")
    _waiting(wait, wait_flag=False)

    listing = _command(commands, "list", "this tenant's jobs, newest first", cmd_list)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    for name, help_text, func in (
        ("get", "a job's state", cmd_get),
        ("cancel", "cancel a job", cmd_cancel),
        ("report", "the compression report of a succeeded job", cmd_report),
    ):
        _command(commands, name, help_text, func).add_argument("job_id")

    events = _command(commands, "events", "a job's events (--follow: live until it ends)", cmd_events)
    events.add_argument("job_id")
    events.add_argument("--follow", "-f", action="store_true")
    events.add_argument("--after", type=int, default=0, help="only events after this event id")

    download = _command(commands, "download", "every artifact of a succeeded job, sha256-checked", cmd_download)
    download.add_argument("job_id")
    download.add_argument("dir", type=Path)

    models = subparsers.add_parser("models", help="models on the server")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    upload = _command(model_commands, "upload", "upload a model folder or archive; prints its job source", cmd_upload)
    upload.add_argument("path", type=Path)
    upload.add_argument("--name", help="a name for it (default: the folder's)")


def _command(commands: Any, name: str, help_text: str, func: Command) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of text")
    parser.add_argument("--api-url", help="server (default INFOPRUNE_API_URL, http://127.0.0.1:8000)")
    parser.set_defaults(func=functools.partial(_run, func))
    return parser


def _waiting(parser: argparse.ArgumentParser, *, wait_flag: bool) -> None:
    if wait_flag:
        parser.add_argument("--wait", action="store_true", help="follow the job to its end; exit 0 only on success")
    parser.add_argument("--timeout", type=float, help="give up waiting after this many seconds (exit 3)")
    parser.add_argument("--download", type=Path, metavar="DIR", help="after success, download the model here")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _run(func: Command, args: argparse.Namespace) -> int:
    """Run a command with a client from the environment; errors become a message and an exit status."""
    key = os.environ.get("INFOPRUNE_API_KEY")
    if not key:
        print("infoprune: set INFOPRUNE_API_KEY to your API key", file=sys.stderr)
        return EXIT_USAGE
    url = args.api_url or os.environ.get("INFOPRUNE_API_URL") or "http://127.0.0.1:8000"
    try:
        with Client(url, key) as client:
            return func(args, client)
    except UsageError as exc:
        print(f"infoprune: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WaitTimeout as exc:
        print(f"infoprune: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except JobDidNotSucceed as exc:
        _emit(args, exc.job)
        print(f"infoprune: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ApiError, InfoPruneClientError) as exc:
        print(f"infoprune: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except httpx.HTTPError as exc:
        print(f"infoprune: cannot reach {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED


# -- commands ------------------------------------------------------------------------------------
def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    config = _config(args.config)
    if args.target_flops is not None:
        config["target_flops_ratio"] = args.target_flops
    source = args.source
    if args.upload:
        model = client.upload(Path(source))
        print(f"uploaded {source} as {model.source}", file=sys.stderr)
        source = model.source
    job = client.submit(
        source,
        config,
        device_class=args.device_class,
        webhook_url=args.webhook_url,
        idempotency_key=args.idempotency_key,
    )
    if not (args.wait or args.download):
        _emit(args, job)
        return EXIT_OK
    print(f"submitted job {job.id}", file=sys.stderr)
    return _follow(args, client, job.id)


def cmd_wait(args: argparse.Namespace, client: Client) -> int:
    return _follow(args, client, args.job_id)


def cmd_list(args: argparse.Namespace, client: Client) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    jobs = []
    for job in client.list(status=args.status, page_size=min(args.limit, 100)):
        jobs.append(job)
        if len(jobs) == args.limit:
            break
    if args.json:
        print(json.dumps([j.model_dump(mode="json") for j in jobs], indent=2))
    else:
        for job in jobs:
            print(f"{job.id}  {job.status:<10} {job.progress:>4.0%}  {job.stage:<16} {job.source}")
    return EXIT_OK


def cmd_get(args: argparse.Namespace, client: Client) -> int:
    _emit(args, client.get(args.job_id))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    _emit(args, client.cancel(args.job_id))
    return EXIT_OK


def cmd_events(args: argparse.Namespace, client: Client) -> int:
    for event in client.events(args.job_id, after=args.after, follow=args.follow):
        if args.json:
            print(event.model_dump_json(), flush=True)
        else:
            print(
                f"{event.created_at:%H:%M:%S} {event.status:<10} {event.progress:>4.0%} {event.stage}: {event.message}"
            )
    return EXIT_OK


def cmd_report(args: argparse.Namespace, client: Client) -> int:
    report = client.report(args.job_id)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        from infoprune_core.report_table import format_report

        print(format_report(report.model_dump(mode="json", exclude_unset=True)))  # the keys the server sent
    return EXIT_OK


def cmd_download(args: argparse.Namespace, client: Client) -> int:
    _downloaded(args, client.download(args.job_id, args.dir))
    return EXIT_OK


def cmd_upload(args: argparse.Namespace, client: Client) -> int:
    if not args.path.exists():
        raise UsageError(f"no such file or folder: {args.path}")
    model = client.upload(args.path, name=args.name)
    print(model.model_dump_json(indent=2) if args.json else model.source)
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------------
def _config(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        config = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--config: {exc}") from exc
    if not isinstance(config, dict):
        raise UsageError("--config must be a JSON object")
    return config


def _follow(args: argparse.Namespace, client: Client, job_id: str) -> int:
    """Wait for the job with a progress bar; then download, and print the job."""
    bar = None if args.quiet else _ProgressBar()
    try:
        job = client.wait(job_id, timeout_s=args.timeout, on_progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if args.download is not None:
        files = client.download(job.id, args.download)
        print(f"downloaded {len(files)} files to {args.download}", file=sys.stderr)
    _emit(args, job)
    return EXIT_OK


class _ProgressBar:
    """A tqdm bar on stderr: the job's progress, with its stage and message."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=1000, bar_format="{l_bar}{bar}| {elapsed}", file=sys.stderr, mininterval=0.5)

    def __call__(self, event: EventOut) -> None:
        self.bar.set_description_str(f"{event.status} {event.stage}: {event.message}"[:60], refresh=False)
        self.bar.update(max(int(event.progress * 1000) - self.bar.n, 0))

    def close(self) -> None:
        self.bar.close()


def _emit(args: argparse.Namespace, job: JobOut) -> None:
    if args.json:
        print(job.model_dump_json(indent=2))
        return
    print(job.id)
    print(
        f"  {job.status}, {job.stage} {job.progress:.0%}, source {job.source}, device class {job.device_class}, "
        f"attempts {job.attempts}",
        file=sys.stderr,
    )
    if job.error:
        print(f"  error: {job.error}", file=sys.stderr)


def _downloaded(args: argparse.Namespace, files: Iterable[Path]) -> None:
    paths = [str(p) for p in files]
    print(json.dumps(paths) if args.json else "\n".join(paths))
