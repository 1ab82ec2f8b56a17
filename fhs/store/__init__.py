"""Store backends: one small interface (``fhs.store.base.Store``), SQLite (embedded default) and Redis."""

from __future__ import annotations

from urllib.parse import urlsplit

from fhs.store.base import Append, Delete, Document, Expect, LogEntry, Op, Put, Store

__all__ = [
    "Append",
    "Delete",
    "Document",
    "Expect",
    "LogEntry",
    "Op",
    "Put",
    "Store",
    "check_store_url",
    "open_store",
]

_SQLITE = "sqlite:///"


def open_store(url: str) -> Store:
    """Open the store named by ``url``: ``sqlite:///relative/path``, ``sqlite:////abs/path`` or ``redis://…``."""
    backend, target = _backend(url)
    if backend == "sqlite":
        from fhs.store.sqlite import SQLiteStore

        return SQLiteStore(target)
    from fhs.store.redis import RedisStore

    return RedisStore(target)


def check_store_url(url: str) -> str:
    """``url`` if :func:`open_store` accepts it (nothing is opened), else ValueError saying what to write."""
    _backend(url)
    return url


def _backend(url: str) -> tuple[str, str]:
    if not isinstance(url, str) or not url.strip():
        raise ValueError("empty store URL; use sqlite:///path/to/fhs.sqlite3 or redis://host:port/db")
    if url.startswith(_SQLITE):
        path = url[len(_SQLITE) :]
        if not path or path.endswith("/"):
            raise ValueError(f"store URL {url!r} names no file; use sqlite:///path/to/fhs.sqlite3")
        return "sqlite", path
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        return "redis", url
    if scheme == "sqlite":
        raise ValueError(
            "SQLite store URLs start with three slashes: sqlite:///relative or sqlite:////absolute"
        )
    # Only the scheme is echoed: the rest of a URL may hold a password.
    raise ValueError(
        f"unsupported store URL scheme {scheme or '(none)'!r}; "
        "use sqlite:///path/to/fhs.sqlite3 or redis://host:port/db[?prefix=name]"
    )
