"""Client of the InfoPrune API for pipelines: submit a compression job, wait for it, download the
compressed model. Needs httpx, pydantic and tenacity only (no torch, no database)::

    from infoprune_client import Client

    with Client("https://infoprune.example.com", api_key) as client:
        job = client.submit("my-model", {"target_flops_ratio": 0.5})
        client.wait(job.id, timeout_s=3600, on_progress=lambda e: print(e.stage, e.progress))
        client.download(job.id, "out/model")
"""

from infoprune_client.client import Client
from infoprune_client.errors import (
    ApiError,
    ArtifactCorrupt,
    InfoPruneClientError,
    JobCancelled,
    JobDidNotSucceed,
    JobFailed,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "ArtifactCorrupt",
    "Client",
    "InfoPruneClientError",
    "JobCancelled",
    "JobDidNotSucceed",
    "JobFailed",
    "WaitTimeout",
]
