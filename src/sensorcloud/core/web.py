"""Serve the dashboard's built files (web/dist) with a single-page-app fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

# Paths the API owns: an unknown one must answer a JSON 404, never the app's index.html.
API_PREFIXES = (
    "api/",
    "auth/",
    "users",
    "iot/",
    ".well-known/",
    "health",
    "ready",
    "metrics",
    "status",
    "docs",
)


class HashedAssets(StaticFiles):
    """Vite puts a content hash in every asset's name: browsers may keep them for a year."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def find_web_dir(configured: Path | None) -> Path | None:
    candidate = configured if configured is not None else Path("web/dist")
    return candidate if (candidate / "index.html").is_file() else None


def mount_web(app: FastAPI, web_dir: Path) -> None:
    root = web_dir.resolve()
    index = root / "index.html"
    if (root / "assets").is_dir():
        app.mount("/assets", HashedAssets(directory=root / "assets"), name="assets")

    async def spa(path: str) -> FileResponse:
        if path.startswith(API_PREFIXES):
            raise HTTPException(status_code=404, detail="Not Found")
        candidate = (root / path).resolve()
        if path and candidate.is_relative_to(root) and candidate.is_file():
            return FileResponse(candidate)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.add_api_route("/{path:path}", spa, methods=["GET"], include_in_schema=False)
