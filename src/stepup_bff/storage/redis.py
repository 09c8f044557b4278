"""Redis store: server-side state shared by every replica (storage.url = redis://, rediss:// or unix://).

Each operation of the `Store` protocol is one Redis command, or one MULTI/EXEC transaction, so it is atomic on the
server whatever other replicas do, and costs one round trip:

    get      GET                       pop      GETDEL (Redis >= 6.2)
    set      SET PX                    delete   DEL
    add      SET NX PX                 incr     MULTI; SET NX PX (0); INCR; EXEC
    replace  SET XX PX                 ttl      PTTL
    compare_and_set  a Lua script: GET, compare, SET PX
    index_put     a Lua script (below) over a hash and a sorted set sharing the index key's hash tag
    index_remove  MULTI; HDEL; ZREM; EXEC          index_items  HGETALL

`incr` creates the counter with its expiry and increments it inside one transaction (INCR keeps the expiry), so no
crash between two commands can leave a counter that never expires, and the window is fixed, not sliding. Expiry is
Redis's own (PX, milliseconds): replicas need not agree on the time.

One connection pool per process, owned by the app's lifespan, with explicit connect and read timeouts. A command is
retried (twice, with a short backoff) only when the connection fails: a timeout is not retried, since the command
may be running and a retry would only add load. Every redis-py error becomes `StoreUnavailable` (503), so nothing
is ever decided on a failed read; the pool reconnects by itself when Redis is back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..errors import StoreUnavailable
from ..settings import StorageSettings
from .base import ErrorHook, StorageConfigError, hide_password

logger = logging.getLogger(__name__)

# GETDEL arrived in Redis 6.2.
MINIMUM_VERSION = (6, 2)


def _ms(ttl: float) -> int:
    # PX takes whole milliseconds, at least 1 (0 is an error); round up so a key never expires early.
    return max(1, math.ceil(ttl * 1000))


def _text(value: bytes | str | None) -> str | None:
    # The pool decodes replies (decode_responses=True); redis-py's types allow bytes too.
    return value.decode() if isinstance(value, bytes) else value


_COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# A bounded index is a hash (member -> value) and a sorted set (member -> rank) side by side. One script, so the put,
# the eviction past the limit and the expiry are one atomic step whatever other replicas do; both keys carry the
# index key's hash tag (`sessions:{<user id>}` and `sessions:{<user id>}:rank`), so it runs on Redis Cluster too.
# KEYS: the hash, the sorted set. ARGV: member, value, rank, limit, ttl in ms. Returns the evicted members.
_INDEX_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local evicted = {}
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, over)) do
    if member ~= ARGV[1] and #evicted < over then table.insert(evicted, member) end
  end
  redis.call('ZREM', KEYS[2], unpack(evicted))
  redis.call('HDEL', KEYS[1], unpack(evicted))
end
local ttl = tonumber(ARGV[5])
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return evicted
"""


class RedisStore:
    def __init__(self, client: Redis, prefix: str, *, on_error: ErrorHook | None = None) -> None:
        self._redis = client
        self._prefix = prefix
        self._on_error = on_error
        # EVALSHA, loading the script again if Redis lost it.
        self._index_put = client.register_script(_INDEX_PUT)
        self._compare_and_set = client.register_script(_COMPARE_AND_SET)

    @contextmanager
    def _unavailable_on_error(self, name: str) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            logger.warning("store unavailable: %s: %s", type(exc).__name__, exc)
            if self._on_error is not None:
                self._on_error("redis", name)
            raise StoreUnavailable() from exc

    @classmethod
    def from_settings(cls, settings: StorageSettings, *, on_error: ErrorHook | None = None) -> RedisStore:
        try:
            pool = BlockingConnectionPool.from_url(
                settings.url,
                max_connections=settings.max_connections,
                timeout=settings.timeout,  # how long a request waits for a free connection
                socket_timeout=settings.timeout,
                socket_connect_timeout=settings.connect_timeout,
                retry=Retry(
                    ExponentialBackoff(cap=0.2, base=0.02), retries=2, supported_errors=(RedisConnectionError,)
                ),
                decode_responses=True,
                client_name="stepup-bff",
            )
        except ValueError as exc:
            # redis-py's reason may quote a piece of a password that was not percent-encoded ("port ... 'pa'").
            message = f"storage.url: not a usable Redis URL ({exc}); percent-encode special characters in a password"
            raise StorageConfigError(hide_password(message, settings.url)) from None
        return cls(Redis(connection_pool=pool), settings.prefix, on_error=on_error)

    async def open(self) -> None:
        """Check at start-up that Redis answers and is recent enough; a clear `StorageConfigError` if not."""
        try:
            await self._redis.ping()
            info: dict[str, Any] = await self._redis.info("server")
        except RedisError as exc:
            await self.close()
            raise StorageConfigError(f"storage.url: cannot use Redis at {self._where()}: {exc}") from None
        version = tuple(int(part) for part in str(info.get("redis_version", "0.0")).split(".")[:2])
        if version < MINIMUM_VERSION:
            await self.close()
            raise StorageConfigError(
                f"storage.url: Redis {info.get('redis_version')} is too old; stepup-bff needs Redis 6.2 or later"
            )

    def _where(self) -> str:
        """Where the pool connects, without any password."""
        kwargs = self._redis.connection_pool.connection_kwargs
        if kwargs.get("path"):
            return f"unix:{kwargs['path']}"
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)} (db {kwargs.get('db', 0)})"

    async def get(self, key: str) -> str | None:
        with self._unavailable_on_error("get"):
            return _text(await self._redis.get(self._prefix + key))

    async def set(self, key: str, value: str, ttl: float) -> None:
        with self._unavailable_on_error("set"):
            await self._redis.set(self._prefix + key, value, px=_ms(ttl))

    async def add(self, key: str, value: str, ttl: float) -> bool:
        with self._unavailable_on_error("add"):
            return bool(await self._redis.set(self._prefix + key, value, px=_ms(ttl), nx=True))

    async def replace(self, key: str, value: str, ttl: float) -> bool:
        with self._unavailable_on_error("replace"):
            return bool(await self._redis.set(self._prefix + key, value, px=_ms(ttl), xx=True))

    async def compare_and_set(self, key: str, expected: str, value: str, ttl: float) -> bool:
        with self._unavailable_on_error("compare_and_set"):
            return bool(await self._compare_and_set(keys=[self._prefix + key], args=[expected, value, _ms(ttl)]))

    async def pop(self, key: str) -> str | None:
        with self._unavailable_on_error("pop"):
            return _text(await self._redis.getdel(self._prefix + key))

    async def delete(self, key: str) -> None:
        with self._unavailable_on_error("delete"):
            await self._redis.delete(self._prefix + key)

    async def incr(self, key: str, ttl: float) -> int:
        key = self._prefix + key
        with self._unavailable_on_error("incr"):
            async with self._redis.pipeline(transaction=True) as multi:
                multi.set(key, 0, px=_ms(ttl), nx=True)  # a new window: the counter and its expiry in one step
                multi.incr(key)
                _, count = await multi.execute()
        return int(count)

    async def ttl(self, key: str) -> float | None:
        with self._unavailable_on_error("ttl"):
            remaining = int(await self._redis.pttl(self._prefix + key))
        # -2: absent; -1: no expiry, which nothing here ever writes (every write above sets PX).
        return None if remaining < 0 else remaining / 1000

    async def ping(self) -> None:
        with self._unavailable_on_error("ping"):
            await self._redis.ping()

    def _index_keys(self, key: str) -> list[str]:
        return [self._prefix + key, self._prefix + key + ":rank"]

    async def index_put(self, key: str, member: str, value: str, *, rank: float, ttl: float, limit: int) -> list[str]:
        with self._unavailable_on_error("index_put"):
            evicted = await self._index_put(
                keys=self._index_keys(key), args=[member, value, repr(rank), limit, _ms(ttl)]
            )
        return [text for text in (_text(item) for item in evicted) if text is not None]

    async def index_remove(self, key: str, member: str) -> None:
        values, ranks = self._index_keys(key)
        with self._unavailable_on_error("index_remove"):
            async with self._redis.pipeline(transaction=True) as multi:
                multi.hdel(values, member)
                multi.zrem(ranks, member)
                await multi.execute()

    async def index_items(self, key: str) -> dict[str, str]:
        with self._unavailable_on_error("index_items"):
            items: dict[Any, Any] = await self._redis.hgetall(self._index_keys(key)[0])
        return {str(_text(member)): str(_text(value)) for member, value in items.items()}

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)
