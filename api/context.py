"""What the app needs at run time, built once from settings and kept on ``app.state.ctx``."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.limits import NoRateLimit, RateLimiter
from infoprune_jobs.dispatch import Dispatcher
from infoprune_jobs.settings import Settings
from infoprune_jobs.storage import ArtifactStorage


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: ArtifactStorage
    dispatcher: Dispatcher
    limiter: RateLimiter = field(default_factory=NoRateLimit)
