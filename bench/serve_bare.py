"""The bare endpoint, served as ``aidaccess serve`` serves the API: uvicorn, uvloop, httptools,
and with several workers a listening socket each (api.listen)."""

from __future__ import annotations

import sys

from api.listen import serve

if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    options = {
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_level": "warning",
    }
    serve("bench.bare_app:app", **options)
