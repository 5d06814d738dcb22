"""The fan's page, served by the queue service at `/` (files in page/, no build step).

The page speaks Korean or English: the first language of `Accept-Language` that it has, else
English, written into `<html lang>`; the fan's own switch (kept in the browser) wins after that.
Everything else is the page's script calling the public API from this same origin: in a
deployment the Ingress routes the API paths (infra/k8s/network.yaml), in dev `make run`'s
gateway does (infra/gateway.py).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

PAGE_DIR = Path(__file__).with_name("page")
LANGUAGES = ("ko", "en")
ASSETS = {
    "app.js": "text/javascript",
    "style.css": "text/css",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def language(accept_language: str) -> str:
    """The first of the fan's languages the page has (q-values respected), else English."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else "en"


def add_page(app: web.Application) -> None:
    index = (PAGE_DIR / "index.html").read_text()
    assets = {name: (PAGE_DIR / name).read_bytes() for name in ASSETS}

    async def page(request: web.Request) -> web.Response:
        lang = language(request.headers.get("Accept-Language", ""))
        return web.Response(
            text=index.replace("{{lang}}", lang),
            content_type="text/html",
            headers={**SECURITY_HEADERS, "Vary": "Accept-Language"},
        )

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound()
        return web.Response(body=assets[name], content_type=ASSETS[name], headers=SECURITY_HEADERS)

    app.router.add_get("/", page)
    app.router.add_get("/page/{name}", asset)
