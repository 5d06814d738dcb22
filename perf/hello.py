"""Bare aiohttp-on-uvloop JSON endpoint, the benchmark ceiling: `python -m perf.hello --port 8080`.

GET /hello answers {"hello":"world"}; `--reuse-port` lets several processes share the port (as
the queue service's workers do). Loopback only; prints one `listening on` line once serving.
"""

from __future__ import annotations

import argparse
import sys

import orjson
import uvloop
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps({"hello": "world"}), content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/hello", hello)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.hello", description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args(argv)
    web.run_app(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        reuse_port=args.reuse_port,
        access_log=None,
        shutdown_timeout=2,
        print=lambda _: print(f"listening on 127.0.0.1:{args.port}", flush=True),
        loop=uvloop.new_event_loop(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
