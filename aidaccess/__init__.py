"""aidaccess: the humanitarian access taskforce's API."""

__version__ = "0.1.0"
