"""Fixtures for the end-to-end tests: a real `certgate serve` process per test, on a fresh
SQLite file or a fresh PostgreSQL schema, driven by the official `openai` Python SDK.

Environment:
  CERTGATE_BIN               the binary (default: target/release/certgate)
  CERTGATE_E2E_POSTGRES_URL  a PostgreSQL URL (else CERTGATE_TEST_POSTGRES_URL, else
                             postgres://postgres@127.0.0.1:5432/test when 127.0.0.1:5432 accepts
                             connections; otherwise the PostgreSQL half is skipped, or fails when
                             CI=true); each test gets its own schema, dropped afterwards
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/test"


def certgate_bin() -> str:
    path = Path(os.environ.get("CERTGATE_BIN", "target/release/certgate"))
    if not path.is_absolute():
        path = ROOT / path
    if not path.is_file():
        pytest.fail(f"certgate binary not found at {path}; build it with `cargo build --release` or set CERTGATE_BIN")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_base_url() -> tuple[str | None, str]:
    """(url, reason-if-unavailable)."""
    url = os.environ.get("CERTGATE_E2E_POSTGRES_URL") or os.environ.get("CERTGATE_TEST_POSTGRES_URL")
    if url:
        return url, ""
    if not _tcp_open("127.0.0.1", 5432):
        return None, ("PostgreSQL not reachable: set CERTGATE_E2E_POSTGRES_URL or run one on "
                      "127.0.0.1:5432 (its half of the end-to-end test is skipped)")
    return DEFAULT_PG_URL, ""


def psql(url: str, sql: str) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql (PostgreSQL client) not installed: needed to create a fresh schema")
    # psql takes a URI as its dbname; drop any query (certgate's `options=` would confuse it).
    parts = urlsplit(url)
    plain = parts._replace(query="").geturl()
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", plain, "-c", sql], check=True,
                   capture_output=True, timeout=30)


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-c%20search_path%3D{schema}"


class Server:
    """One `certgate serve` process; stdout (where the bootstrap key is printed) and stderr
    (its logs) are collected by threads."""

    def __init__(self, database: str, port: int | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, expect_key: bool = True):
        self.database = database
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []
        self._lines_cv = threading.Condition()
        full_env = dict(os.environ)
        full_env.setdefault("RUST_LOG", "info,sqlx=warn")
        full_env.pop("CERTGATE_ADMIN_KEY_FILE", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [certgate_bin(), "serve", "--listen", f"127.0.0.1:{self.port}", "--database", database,
             *(extra_args or [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines), daemon=True),
        ]
        for r in self._readers:
            r.start()
        self.admin_key, self.org = self._wait_for_key() if expect_key else (None, None)
        self._wait_ready()
        self._conformance = None

    @property
    def conformance(self):
        """Checks every SDK answer against this server's /openapi.json (openapi_conformance)."""
        if self._conformance is None:
            from openapi_conformance import Conformance

            self._conformance = Conformance(f"http://127.0.0.1:{self.port}")
        return self._conformance

    def _read(self, stream, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._lines_cv:
                sink.append(line.rstrip("\n"))
                self._lines_cv.notify_all()
        with self._lines_cv:
            self._lines_cv.notify_all()

    def _wait_for_key(self, timeout: float = 30.0):
        """The bootstrap answer: one JSON object on stdout (never in a log line)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lines_cv:
            while True:
                for line in self.stdout_lines[seen:]:
                    line = line.strip()
                    if line.startswith("{") and '"admin_key"' in line:
                        doc = json.loads(line)
                        return doc["admin_key"]["value"], doc["organization"]
                seen = len(self.stdout_lines)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"certgate exited {self.proc.returncode}:\n{self.log()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no admin key on stdout within {timeout}s:\n{self.log()}")
                self._lines_cv.wait(min(left, 0.2))

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"certgate exited {self.proc.returncode}:\n{self.log()}")
            if _tcp_open("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"certgate did not listen on {self.port} within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        with self._lines_cv:
            return "\n".join(self.stderr_lines[-200:])

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, return the exit code (killing it if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"certgate did not exit within {timeout}s of SIGTERM:\n{self.log()}")
        for r in self._readers:
            r.join(timeout=5)
        return self.proc.returncode


class Backend:
    def __init__(self, kind: str, database: str, cleanup):
        self.kind = kind
        self.database = database
        self._cleanup = cleanup

    def cleanup(self) -> None:
        self._cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    if request.param == "sqlite":
        tmp = tempfile.mkdtemp(prefix="certgate-e2e-")
        b = Backend("sqlite", f"sqlite://{tmp}/certgate.db", lambda: shutil.rmtree(tmp, ignore_errors=True))
    else:
        base, reason = postgres_base_url()
        if base is None:
            if os.environ.get("CI") == "true":
                pytest.fail(reason + "; CI=true requires it")
            pytest.skip(reason)
        schema = f"e2e_{uuid.uuid4().hex[:12]}"
        try:
            psql(base, f"CREATE SCHEMA {schema}")
        except subprocess.CalledProcessError as e:
            pytest.skip(f"cannot create a schema on {urlsplit(base)._replace(query='').geturl()}: "
                        f"{e.stderr.decode(errors='replace').strip()}")
        b = Backend("postgres", with_search_path(base, schema),
                    lambda: psql(base, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    yield b
    b.cleanup()


@pytest.fixture
def server(backend):
    srv = Server(backend.database)
    yield srv
    code = srv.stop()
    if code != 0:
        pytest.fail(f"certgate exited {code} after SIGTERM (expected 0):\n{srv.log()}")
    if srv._conformance is not None and srv._conformance.failures:
        pytest.fail("answers that do not match /openapi.json:\n" + "\n".join(srv._conformance.failures))


def cli(database: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`certgate ARGS --database DATABASE`, run to completion."""
    env = dict(os.environ)
    env.pop("CERTGATE_ADMIN_KEY_FILE", None)
    return subprocess.run([certgate_bin(), *args, "--database", database], check=check,
                          capture_output=True, text=True, timeout=60, env=env)


def create_org(database: str, name: str) -> tuple[str, dict]:
    """`certgate org create`: returns (admin key, organization)."""
    out = cli(database, "org", "create", "--name", name)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    return doc["admin_key"]["value"], doc["organization"]
