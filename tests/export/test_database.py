"""``--database``: the hypothesis example database named by one string, a folder or a Redis
server that workers on several machines share (DESIGN principle 11)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from fuzzkit.engines.database import DEFAULT, open_database
from fuzzkit.errors import ConfigError

WORKER = Path(__file__).with_name("redis_worker.py")
UNALLOCATABLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, merged)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_folder_is_a_directory_database(tmp_path: Path) -> None:
    db = open_database(str(tmp_path / "examples"))
    assert isinstance(db, DirectoryBasedExampleDatabase)
    db.save(b"key", b"value")
    assert list(db.fetch(b"key")) == [b"value"]
    assert (tmp_path / "examples").is_dir()


def test_the_default_is_the_corpora_folder() -> None:
    assert DEFAULT.parts[-2:] == ("corpora", "hypothesis")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "empty"),
        ("redis://127.0.0.1/0", "expected a directory or redis://host:port/N"),
        ("redis://127.0.0.1:6379", "expected a directory or redis://host:port/N"),
        ("redis://127.0.0.1:6379/zero", "expected a directory or redis://host:port/N"),
        ("http://127.0.0.1:6379/0", "expected a directory or redis://host:port/N"),
        ("redis://127.0.0.1:0/0", "port 0 is not between 1 and 65535"),
        ("redis://127.0.0.1:70000/0", "port 70000 is not between 1 and 65535"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_flag(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_database(spec)
    message = str(err.value)
    assert message.startswith("--database") and says in message and "\n" not in message


def test_a_file_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        open_database(str(tmp_path / "f"))


def test_an_unreachable_server_is_said_before_the_campaign() -> None:
    spec = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError) as err:
        open_database(spec)
    assert str(err.value).startswith(f"--database {spec}: cannot reach the Redis server")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on 127.0.0.1 (a free port, no persistence, a temporary folder),
    stopped at the end."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip(
            "redis-server is not installed and scripts/test-services could not install it "
            "(it needs root and apt-get)"
        )
    port = free_port()
    cmd = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*cmd, "--dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        # The server says when it listens; reading its log until then needs no timing.
        log = []
        for line in proc.stdout:
            log.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            pytest.fail("redis-server ended before accepting connections:\n" + "".join(log))
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def worker(mode: str, url: str) -> str:
    """Run one worker process; its last line: a finding's title, ``clean`` or ``empty``."""
    out = subprocess.run(
        [sys.executable, str(WORKER), mode, "--database", url],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def test_workers_share_what_they_find_through_redis(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    assert worker("replay", redis_url) == "empty", "nothing to replay in a fresh database"
    assert worker("find", redis_url) == UNALLOCATABLE
    assert client.keys("hypothesis-example:*"), "the finding worker saved its example in Redis"
    # The second worker only replays the database's examples: it generates nothing itself.
    assert worker("replay", redis_url) == UNALLOCATABLE


def test_fuzz_workers_on_two_machines_share_one_redis_database(redis_url: str, tmp_path: Path) -> None:
    # Two `fuzzkit fuzz` campaigns with their own folders (as on two machines) and one
    # --database: what the first found, the second replays first.
    def campaign(folder: str, *args: str) -> str:
        (tmp_path / folder).mkdir()
        out = subprocess.run(
            [sys.executable, "-m", "fuzzkit", "-p", "no:scx", "-p", "no:struct_ops", "fuzz",
             "--engine", "hypothesis", "--revision", "merged", "--cpus", "1", "--jobs", "1",
             "--database", redis_url, *args],
            cwd=tmp_path / folder, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 1, out.stdout + out.stderr
        return out.stdout

    assert UNALLOCATABLE in campaign("a", "--seed", "4", "--runs", "50")
    assert f"found after 1 executions: {UNALLOCATABLE} [new bug]" in campaign(
        "b", "--seed", "9", "--runs", "2"
    )
