"""Real `manage.py worker` processes against pytest's test database, for the webhook fault tests."""

import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

from reliability.servers import base_env, database_url_of

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    APPLICATION_NAME = "webhook-worker"

    def __init__(self, *args: str, log: Path, **env):
        self.log_path = log
        self.log = log.open("ab")
        database_url = database_url_of(connection.settings_dict)
        if connection.vendor == "postgresql":  # named, so a test can cut exactly the worker's connections
            database_url += f"?application_name={self.APPLICATION_NAME}"
        environment = base_env(DATABASE_URL=database_url,
                               WEBHOOK_ALLOW_PRIVATE_NETWORKS="1", LOG_LEVEL="INFO", **env)
        self.process = subprocess.Popen([sys.executable, "manage.py", "worker", *args], cwd=ROOT, env=environment,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_started()

    def wait_started(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"worker started" in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        raise AssertionError("worker did not start")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last write."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None
