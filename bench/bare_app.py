"""The yardstick: a bare FastAPI endpoint, served the same way as the API."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok"}
