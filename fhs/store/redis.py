"""The Redis store: several FHS processes sharing one Redis behave as one FHS.

Layout (``P`` = key prefix, default ``fhs``; wrapped in ``{}`` so every key of one FHS hashes to one
Redis Cluster slot and the write script may touch them all):

- ``{P}:c:<collection>`` — hash ``key -> "<version>:<json>"``
- ``{P}:l:<log>`` — list of JSON entries; an entry's seq is its 1-based position (``RPUSH`` returns it)
  plus ``{P}:lt:<log>``, the number of entries trimmed from the front (absent = 0)

Batches run as one Lua script (EVALSHA): it first walks the ops checking every condition against the
stored versions as updated by earlier ops of the same batch, and only when all hold applies them.
Redis runs a script without interleaving other commands, so a batch is atomic across all clients.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis

from fhs.store import codec
from fhs.store.base import Append, Delete, Document, Expect, LogEntry, Op, Put

PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# ARGV[1] = number of ops; then 4 slots per op: kind, KEYS index, field, arg.
#   P (put):    arg = "<cond>|<json>" where cond is "" (none), "a" (if_absent), "v<n>" (if_version n)
#               or "av<n>" (both)
#   D (delete): arg = "e" with must_exist, else ""
#   X (expect): arg = "<version>"
#   A (append): field = KEYS index of the log's trimmed counter, arg = json entry
# Returns {"ok", seq...} or {"conflict", op_index (0-based), current_version, reason}.
_WRITE_SCRIPT = r"""
local n = tonumber(ARGV[1])
local function stored_version(key, field)
  local cur = redis.call('HGET', key, field)
  if not cur then return 0 end
  return tonumber(string.match(cur, '^(%d+):'))
end
local overlay = {}
local function version_of(key, field)
  local id = key .. '\0' .. field
  local v = overlay[id]
  if v == nil then v = stored_version(key, field) end
  return v, id
end
-- phase 1: every condition, simulating the batch's own effects
for i = 0, n - 1 do
  local base = 2 + i * 4
  local kind, key, field, arg = ARGV[base], KEYS[tonumber(ARGV[base + 1])], ARGV[base + 2], ARGV[base + 3]
  if kind ~= 'A' then
    local v, id = version_of(key, field)
    if kind == 'P' then
      local cond = string.match(arg, '^([^|]*)|')
      if string.sub(cond, 1, 1) == 'a' then
        if v ~= 0 then return {'conflict', i, v, 'document already exists'} end
        cond = string.sub(cond, 2)
      end
      if string.sub(cond, 1, 1) == 'v' and tonumber(string.sub(cond, 2)) ~= v then
        return {'conflict', i, v, 'document version differs'}
      end
      overlay[id] = v + 1
    elseif kind == 'D' then
      if arg == 'e' and v == 0 then return {'conflict', i, v, 'document does not exist'} end
      overlay[id] = 0
    elseif kind == 'X' then
      if tonumber(arg) ~= v then return {'conflict', i, v, 'document version differs'} end
    end
  end
end
-- phase 2: apply
local result = {'ok'}
for i = 0, n - 1 do
  local base = 2 + i * 4
  local kind, key, field, arg = ARGV[base], KEYS[tonumber(ARGV[base + 1])], ARGV[base + 2], ARGV[base + 3]
  if kind == 'P' then
    local json = string.sub(arg, string.find(arg, '|', 1, true) + 1)
    redis.call('HSET', key, field, (stored_version(key, field) + 1) .. ':' .. json)
  elseif kind == 'D' then
    redis.call('HDEL', key, field)
  elseif kind == 'A' then
    local trimmed = tonumber(redis.call('GET', KEYS[tonumber(field)]) or '0')
    table.insert(result, redis.call('RPUSH', key, arg) + trimmed)
  end
end
return result
"""

# KEYS = log list, trimmed counter; ARGV = after, limit. Returns {seq before the first item, items}.
_READ_LOG_SCRIPT = r"""
local trimmed = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = math.max(tonumber(ARGV[1]) - trimmed, 0)
return {trimmed + start, redis.call('LRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)}
"""

# KEYS = log list, trimmed counter; ARGV = keep_last. Returns how many entries were removed.
_TRIM_LOG_SCRIPT = r"""
local excess = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return 0 end
redis.call('LTRIM', KEYS[1], excess, -1)
redis.call('INCRBY', KEYS[2], excess)
return excess
"""


def split_prefix(url: str, prefix: str | None = None) -> tuple[str, str]:
    """Remove the ``prefix`` query parameter from a Redis URL; return (url without it, prefix)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    from_url = [value for name, value in query if name == "prefix"]
    rest = [(name, value) for name, value in query if name != "prefix"]
    chosen = prefix if prefix is not None else (from_url[-1] if from_url else "fhs")
    if not PREFIX_PATTERN.match(chosen):
        raise ValueError(
            f"invalid Redis key prefix {chosen!r}: use 1-64 characters from letters, digits, '_', '.', '-'"
        )
    return urlunsplit(parts._replace(query=urlencode(rest))), chosen


class RedisStore:
    """A :class:`fhs.store.base.Store` in Redis; stores with the same URL and prefix share all data."""

    def __init__(self, url: str, *, prefix: str | None = None) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a Redis URL (scheme {scheme!r}); use redis://host:port/db[?prefix=name]")
        redis_url, self.prefix = split_prefix(url, prefix)
        self._client: aioredis.Redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self._script = self._client.register_script(_WRITE_SCRIPT)
        self._read_log_script = self._client.register_script(_READ_LOG_SCRIPT)
        self._trim_log_script = self._client.register_script(_TRIM_LOG_SCRIPT)
        parts = urlsplit(redis_url)
        self._display = f"{parts.scheme}://{parts.hostname or ''}:{parts.port or ''}{parts.path}"

    def __repr__(self) -> str:  # never shows the password
        return f"RedisStore({self._display!r}, prefix={self.prefix!r})"

    def _collection_key(self, collection: str) -> str:
        return f"{{{self.prefix}}}:c:{collection}"

    def _log_key(self, log: str) -> str:
        return f"{{{self.prefix}}}:l:{log}"

    def _trimmed_key(self, log: str) -> str:
        return f"{{{self.prefix}}}:lt:{log}"

    # -- reads ----------------------------------------------------------------------------------------

    async def get(self, collection: str, key: str) -> Document | None:
        """The document at ``collection/key`` or None."""
        codec.check_name("collection", collection)
        codec.check_name("key", key)
        raw = await self._client.hget(self._collection_key(collection), key)  # type: ignore[misc]
        return None if raw is None else _document(key, raw)

    async def list(self, collection: str) -> builtins.list[Document]:
        """Every document of ``collection``, ordered by key (Unicode code point order)."""
        codec.check_name("collection", collection)
        raw: dict[str, str] = await self._client.hgetall(self._collection_key(collection))  # type: ignore[misc]
        return [_document(key, raw[key]) for key in sorted(raw)]

    async def read_log(self, log: str, *, after: int = 0, limit: int = 1000) -> builtins.list[LogEntry]:
        """Entries of ``log`` with ``seq > after``, oldest first, at most ``limit``."""
        codec.check_name("log", log)
        after, limit = codec.check_read_window(after, limit)
        if limit == 0:
            return []
        keys = [self._log_key(log), self._trimmed_key(log)]
        before, raw = await self._read_log_script(keys=keys, args=[after, limit])
        return [LogEntry(int(before) + i + 1, codec.decode_value(text)) for i, text in enumerate(raw)]

    async def log_length(self, log: str) -> int:
        """The highest sequence number of ``log`` (0 when empty)."""
        codec.check_name("log", log)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.get(self._trimmed_key(log))
            pipe.llen(self._log_key(log))
            trimmed, length = await pipe.execute()
        return int(trimmed or 0) + int(length)

    # -- writes ---------------------------------------------------------------------------------------

    async def write(self, ops: Sequence[Op], *, durable: bool = True) -> builtins.list[int]:
        """Apply ``ops`` atomically (one Lua script); return the Append seqs.

        ``durable`` is accepted for the interface: Redis persistence is the server's configuration.
        """
        checked = codec.validate_ops(ops)
        if not checked:
            return []
        keys: builtins.list[str] = []
        key_index: dict[str, int] = {}
        argv: builtins.list[str | int] = [len(checked)]

        def slot(redis_key: str) -> int:
            if redis_key not in key_index:
                keys.append(redis_key)
                key_index[redis_key] = len(keys)
            return key_index[redis_key]

        for op in checked:
            if isinstance(op, Put):
                value = codec.encode_value(op.value, f"{op.collection}/{op.key}")
                cond = ("a" if op.if_absent else "") + ("" if op.if_version is None else f"v{op.if_version}")
                argv += ["P", slot(self._collection_key(op.collection)), op.key, f"{cond}|{value}"]
            elif isinstance(op, Delete):
                argv += ["D", slot(self._collection_key(op.collection)), op.key, "e" if op.must_exist else ""]
            elif isinstance(op, Expect):
                argv += ["X", slot(self._collection_key(op.collection)), op.key, str(op.version)]
            else:
                assert isinstance(op, Append)
                entry = codec.encode_value(op.entry, f"log {op.log}")
                argv += ["A", slot(self._log_key(op.log)), slot(self._trimmed_key(op.log)), entry]

        result: builtins.list[Any] = await self._script(keys=keys, args=argv)
        if result[0] == "conflict":
            index, current, reason = int(result[1]), int(result[2]), str(result[3])
            raise codec.conflict(index, checked[index], current, reason)
        return [int(seq) for seq in result[1:]]

    async def trim_log(self, log: str, *, keep_last: int) -> int:
        """Delete the oldest entries of ``log`` beyond the newest ``keep_last`` (atomic); return the count."""
        codec.check_name("log", log)
        keep_last = codec.check_keep_last(keep_last)
        keys = [self._log_key(log), self._trimmed_key(log)]
        return int(await self._trim_log_script(keys=keys, args=[keep_last]))

    # -- lifecycle ------------------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when Redis answers PING."""
        try:
            return bool(await self._client.ping())
        except Exception:
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _document(key: str, raw: str) -> Document:
    version, _, text = raw.partition(":")
    return Document(key, codec.decode_value(text), int(version))
