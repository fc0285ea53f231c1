"""The web console (issue 35): pages for people, on the API's accounts, workflow and policy.
``api.console.pages`` holds the routes and ``install_console``; this module only says which paths are the console's."""

from __future__ import annotations

STATIC_PREFIX = "/static/console"
# Every path the console answers besides its assets: its pages get the console's security headers.
PAGE_PREFIXES = ("/sign-in", "/sign-out", "/cities/", "/requests", "/queue", "/pauses", "/violations", STATIC_PREFIX)


def is_console_path(path: str) -> bool:
    return path == "/" or path.startswith(PAGE_PREFIXES)
