"""InfoPrune HTTP API (FastAPI). Build with ``create_app(build_context(Settings()))``."""

from api.app import build_context, create_app

__all__ = ["build_context", "create_app"]
