"""The baseline for API benchmarks: the same server stack (FastAPI on uvicorn) returning a fixed body.

Run: python -m bench.bare_server PORT BODY_FILE [gzip]   (gzip: BODY_FILE is already gzip-compressed)
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response


def make_app(body: bytes, gzipped: bool) -> FastAPI:
    app = FastAPI()
    headers = {"Content-Encoding": "gzip"} if gzipped else {}

    @app.get("/bare")
    async def bare() -> Response:
        return Response(body, media_type="application/json", headers=headers)

    return app


if __name__ == "__main__":
    port, body_file = int(sys.argv[1]), Path(sys.argv[2])
    gzipped = len(sys.argv) > 3 and sys.argv[3] == "gzip"
    uvicorn.run(make_app(body_file.read_bytes(), gzipped), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)
