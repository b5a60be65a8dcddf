"""The floor for bench/http.py: a bare FastAPI app, one ``async def`` endpoint
returning a small dict, served by the same uvicorn as the service."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
