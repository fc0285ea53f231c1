"""The web console (issue 35): pages for people, on the API's accounts, workflow and policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_PREFIX = "/static/console"
# Every path the console answers besides its assets: its pages get the console's security headers.
PAGE_PREFIXES = ("/sign-in", "/sign-out", "/cities/", "/requests", "/queue", "/pauses", "/violations", STATIC_PREFIX)


def is_console_path(path: str) -> bool:
    return path == "/" or path.startswith(PAGE_PREFIXES)


def install_console(app: FastAPI) -> None:
    from api.console.pages import install_sign_in_redirect, router

    app.mount(STATIC_PREFIX, StaticFiles(directory=Path(__file__).resolve().parent / "static"), name="console-assets")
    app.include_router(router)
    install_sign_in_redirect(app)
