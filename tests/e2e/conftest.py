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
    """One `certgate serve` process; stderr is collected by a thread."""

    def __init__(self, database: str, port: int | None = None, extra_args: list[str] | None = None):
        self.database = database
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.stderr_lines: list[str] = []
        self._lines_cv = threading.Condition()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info,sqlx=warn")
        self.proc = subprocess.Popen(
            [certgate_bin(), "serve", "--listen", f"127.0.0.1:{self.port}", "--database", database,
             *(extra_args or [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.admin_key, self.org = self._wait_for_key()
        self._wait_ready()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lines_cv:
                self.stderr_lines.append(line.rstrip("\n"))
                self._lines_cv.notify_all()
        with self._lines_cv:
            self._lines_cv.notify_all()

    def _wait_for_key(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lines_cv:
            while True:
                for line in self.stderr_lines[seen:]:
                    line = line.strip()
                    if line.startswith("{") and '"admin_key"' in line:
                        doc = json.loads(line)
                        return doc["admin_key"]["value"], doc["organization"]
                seen = len(self.stderr_lines)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"certgate exited {self.proc.returncode}:\n{self.log()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no admin key on stderr within {timeout}s:\n{self.log()}")
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
        self._reader.join(timeout=5)
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


def create_org(database: str, name: str) -> tuple[str, dict]:
    """`certgate org create`: returns (admin key, organization)."""
    out = subprocess.run([certgate_bin(), "org", "create", "--name", name, "--database", database],
                         check=True, capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    return doc["admin_key"]["value"], doc["organization"]
