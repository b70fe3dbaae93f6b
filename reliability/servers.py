"""Throwaway servers for the reliability runs: PostgreSQL, Redis and gunicorn, each on a free loopback port.

Every server here is started by us, in a temporary directory, and stopped by the process id we started;
nothing touches a shared instance (the PostgreSQL on 5432, the Redis on 6379).
"""

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# Servers and commands run with DEBUG off, which needs a SECRET_KEY: the environment's, else one for this run.
RUN_SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_in(first: int, last: int) -> int:
    """A free loopback port between `first` and `last` (inclusive), for servers kept to a port range."""
    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {first} and {last}")


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _as_postgres(*args, **kwargs):
    """Run a PostgreSQL binary as the `postgres` user when we are root (initdb refuses root)."""
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    located = shutil.which(name)
    if located:
        return located
    raise RuntimeError(f"PostgreSQL's {name} is not installed")


class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temp dir, trust auth, on a free port."""

    def __init__(self, port: int | None = None, *, initialize: bool = True):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="ep-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        if initialize:  # initdb's defaults: wal_level=replica, 10 WAL senders, replication trusted on loopback
            _as_postgres(postgres_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                         "--no-sync")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def start(self, timeout: float = 30) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        _as_postgres(postgres_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-o", options, "-w",
                     "-t", str(int(timeout)), "start")

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(postgres_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> None:
        _as_postgres(postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class StreamingReplica(ThrowawayPostgres):
    """A hot standby of `primary`: `pg_basebackup -R` (streaming, recovery settings written) into a temp dir,
    started as a second postmaster on `port`."""

    def __init__(self, primary: ThrowawayPostgres, port: int | None = None):
        super().__init__(port, initialize=False)
        self.primary = primary
        _as_postgres(postgres_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                     "-D", self.data, "-R", "-X", "stream", "-c", "fast", "--no-sync")

    def start(self, timeout: float = 30) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                   "-c hot_standby=on -c fsync=off -c max_connections=200")
        _as_postgres(postgres_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-o", options, "-w",
                     "-t", str(int(timeout)), "start")


class ThrowawayRedis:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(lambda: port_open(self.port), 10):
            raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class PgBouncer:
    """PgBouncer (Debian's `pgbouncer`) in transaction mode on `port`, in front of the PostgreSQL at
    `server_port`: every database name passes through, trust authentication, `pgbouncer` the admin console."""

    def __init__(self, port: int, *, server_port: int, pool_size: int = 20, max_clients: int = 400):
        self.port, self.server_port, self.pool_size = port, server_port, pool_size
        self.dir = tempfile.mkdtemp(prefix="ep-pgbouncer-")
        self.config = os.path.join(self.dir, "pgbouncer.ini")
        self.log = os.path.join(self.dir, "pgbouncer.log")
        Path(self.config).write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {self.dir}\n"
            f"auth_type = trust\nauth_file = {os.path.join(self.dir, 'users.txt')}\n"
            "admin_users = postgres\nstats_users = postgres\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = {max_clients}\n"
            # psycopg and Django send no other startup parameter once `options` is off (DATABASE_STARTUP_OPTIONS).
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.log}\npidfile = {os.path.join(self.dir, 'pgbouncer.pid')}\n"
        )
        Path(self.dir, "users.txt").write_text('"postgres" ""\n')  # trust still names its users
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.config, "postgres", "postgres")
        self.process = None

    def database_url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def start(self, timeout: float = 15) -> None:
        command = [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", self.config]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        if not wait_until(lambda: port_open(self.port), timeout):
            self.stop()
            log = Path(self.log).read_text(errors="replace") if os.path.exists(self.log) else ""
            raise RuntimeError(f"pgbouncer did not start:\n{log[-3000:]}")

    def pools(self) -> dict[str, dict]:
        """`SHOW POOLS` from the admin console, per database: clients and server connections by state."""
        import psycopg

        with psycopg.connect(self.database_url("pgbouncer"), autocommit=True, prepare_threshold=None,
                             cursor_factory=psycopg.ClientCursor) as conn:
            cursor = conn.execute("SHOW POOLS")
            names = [column.name for column in cursor.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def pgbouncer_installed() -> bool:
    return bool(shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer"))


def manage(*args, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, check=check,
                          capture_output=True, text=True)


class Gunicorn:
    """gunicorn serving the platform with the given environment; `log` holds its stdout/stderr."""

    def __init__(self, env: dict, *, workers: int = 2, threads: int = 4, access_log: bool = False,
                 timeout: int = 30, port: int | None = None):
        self.port = port or free_port()
        self.env = env
        self.workers, self.threads, self.timeout = workers, threads, timeout
        self.access_log = access_log
        self.log_file = tempfile.NamedTemporaryFile(prefix="ep-gunicorn-", suffix=".log", delete=False)
        self.process = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 30) -> None:
        command = [str(VENV_BIN / "gunicorn"), "engagement_platform.wsgi:application",
                   "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                   "--threads", str(self.threads), "--timeout", str(self.timeout), "--graceful-timeout", "5"]
        if self.access_log:
            command += ["--access-logfile", "-", "--access-logformat", 'pid=%(p)s status=%(s)s "%(r)s"']
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(self._ready, ready_timeout, 0.2):
            self.stop()
            raise RuntimeError(f"gunicorn did not become ready:\n{self.read_log()[-3000:]}")
        # One answer means one worker is up; the others may still be loading the platform. With an access
        # log, wait until each worker has answered, so a test's burst can reach all of them.
        if self.access_log and not wait_until(self._all_workers_answer, ready_timeout, 0.1):
            self.stop()
            raise RuntimeError(f"not every gunicorn worker became ready:\n{self.read_log()[-3000:]}")

    def answering_pids(self) -> set[str]:
        """The workers (pid=...) that have answered a request, from the access log."""
        return {line.split()[0] for line in self.read_log().splitlines() if line.startswith("pid=")}

    def _all_workers_answer(self) -> bool:
        def probe():
            try:
                urllib.request.urlopen(self.base_url + "/healthz", timeout=2).close()
            except OSError:
                pass

        probes = [threading.Thread(target=probe) for _ in range(self.workers * 2)]
        for thread in probes:
            thread.start()
        for thread in probes:
            thread.join()
        return len(self.answering_pids()) >= self.workers

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{self.read_log()[-3000:]}")
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def read_log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        Path(self.log_file.name).unlink(missing_ok=True)


def base_env(**overrides) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL")}
    env.update({"DEBUG": "0", "SECRET_KEY": RUN_SECRET_KEY, "DJANGO_SETTINGS_MODULE": "engagement_platform.settings",
                "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def database_url_of(settings_dict: dict) -> str:
    """DATABASE_URL for a Django connection's settings (used to point a server at pytest's test database)."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{os.path.abspath(settings_dict['NAME'])}"
    user = settings_dict.get("USER") or "postgres"
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else f"{user}@"
    return (f"postgres://{auth}{settings_dict.get('HOST') or '127.0.0.1'}:{settings_dict.get('PORT') or 5432}/"
            f"{settings_dict['NAME']}")
