"""A bare aiohttp server answering the task routes with canned JSON: B4's baseline."""

from __future__ import annotations

import argparse
import json
import sys

from aiohttp import web


def build(body: bytes) -> web.Application:
    async def create(request: web.Request) -> web.Response:
        json.loads(await request.read())  # read and parse the body as the real handler does
        return web.Response(body=body, status=201, content_type="application/json")

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def index(request: web.Request) -> web.Response:
        return web.json_response({"projects": []})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_post("/projects/{project}", create)
    app.router.add_get("/projects/{project}/tasks/{task}", get)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", required=True, help="file holding the JSON to answer with")
    args = parser.parse_args()
    with open(args.body, "rb") as f:
        body = f.read()
    web.run_app(build(body), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    sys.exit(main())
