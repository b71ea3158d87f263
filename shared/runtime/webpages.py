"""Serving the web pages: plain files, a strict Content-Security-Policy.

Each service mounts its own folder of pages under a prefix (`/agent/`, `/consumer/`), plus the
files both pages share (`shared/web/`) under `{prefix}common/`. Every file is known at mount time
(no path from the request ever reaches the file system), and every answer carries the CSP.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response

from shared.settings import Settings

COMMON = Path(__file__).parents[1] / "web"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def content_security_policy(settings: Settings) -> str:
    """`default-src 'self'`; scripts and styles from files only (no inline, no eval); images and
    API calls only to the two services, plus blob:/data: for local previews and fetched photos."""
    services = f"'self' {settings.public_upload_url} {settings.public_delivery_url}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {services} blob: data:",
            f"connect-src {services}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
        ]
    )


def page_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def mount_pages(app: FastAPI, prefix: str, folder: Path, settings: Settings) -> None:
    """Serve `folder` at `/{prefix}/` (index.html at the root) and shared/web at `/{prefix}/common/`."""
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    files |= {f"common/{p.relative_to(COMMON).as_posix()}": p for p in COMMON.rglob("*") if p.is_file()}
    files[""] = folder / "index.html"
    headers = page_headers(settings)

    @app.get(f"/{prefix}/config.json", include_in_schema=False)
    async def page_config():
        return JSONResponse(
            {
                "upload_url": settings.public_upload_url,
                "delivery_url": settings.public_delivery_url,
                "max_caption_chars": settings.max_caption_chars,
            },
            headers=headers,
        )

    @app.get(f"/{prefix}", include_in_schema=False)
    async def to_index():
        return RedirectResponse(f"/{prefix}/", status_code=308)

    @app.api_route(f"/{prefix}/{{name:path}}", methods=["GET", "HEAD"], include_in_schema=False)
    async def page_file(name: str):
        path = files.get(name)
        if path is None:
            return Response("not found", status_code=404, media_type="text/plain", headers=headers)
        media_type = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(path.read_bytes(), media_type=media_type, headers=headers)


def page_url(base: str, page: str, token: str, account: str, conversations: list[str]) -> str:
    """A page address with everything secret in the fragment (never sent to a server)."""
    fragment = "&".join(
        [
            f"token={quote(token, safe='')}",
            f"account={quote(account, safe='')}",
            *(f"conversation={quote(c, safe='')}" for c in conversations),
        ]
    )
    return f"{base.rstrip('/')}/{page}/#{fragment}"
