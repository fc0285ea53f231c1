"""aidaccess: the humanitarian access taskforce's API and console."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The version is the package's (pyproject.toml), read from its installed metadata.
    __version__ = version("aidaccess")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
