"""Where the hypothesis engine keeps its examples: a folder, or a Redis server shared by
workers on several machines (as HypoFuzz does), named by one ``--database`` string.

* a path (default ``corpora/hypothesis/``): hypothesis' ``DirectoryBasedExampleDatabase``;
* ``redis://host:port/N``: hypothesis' ``RedisExampleDatabase`` on database ``N`` of that
  server, through the ``redis`` client (``pip install 'fuzzkit[redis]'``). The server is
  asked for a ``PING`` here, so a wrong address fails before the campaign, not in it.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from fuzzkit.errors import ConfigError, MissingFeature

DEFAULT = Path(__file__).resolve().parents[2] / "corpora" / "hypothesis"
#: Seconds to wait for a Redis server before saying it cannot be reached.
CONNECT_TIMEOUT = 5.0

_REDIS = re.compile(r"redis://(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})/(?P<db>\d{1,5})")


def open_database(spec: str) -> ExampleDatabase:
    """The example database ``spec`` names; a :class:`ConfigError` naming ``--database``
    when it is malformed or its server does not answer."""
    if "://" in spec:
        return _redis(spec)
    if not spec:
        raise ConfigError("--database: empty; give a directory or redis://host:port/N")
    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--database {spec}: not a directory")
    return DirectoryBasedExampleDatabase(str(path))


def _redis(spec: str) -> ExampleDatabase:
    match = _REDIS.fullmatch(spec)
    if match is None:
        raise ConfigError(f"--database {spec}: expected a directory or redis://host:port/N")
    port, db = int(match["port"]), int(match["db"])
    if not 0 < port < 65536:
        raise ConfigError(f"--database {spec}: port {port} is not between 1 and 65535")
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError as exc:
        raise MissingFeature(
            f"--database {spec}: a Redis database needs the redis client: pip install 'fuzzkit[redis]'"
        ) from exc
    client = redis.Redis(
        host=match["host"].strip("[]"),
        port=port,
        db=db,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONNECT_TIMEOUT,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"--database {spec}: cannot reach the Redis server: {exc}") from exc
    return RedisExampleDatabase(client)
