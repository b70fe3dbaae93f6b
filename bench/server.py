"""The benchmark's own gunicorn: production settings, floor views on, a free loopback port."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn with `workers` x `threads` (gthread).

    `max_connections`: the most connections a load run opens at once. Each worker then takes at most its
    share of them (`--worker-connections`): wrk keeps its connections open for the whole run, and the
    workers race to accept them, so without a bound one worker could serve most of a run on one core
    while the other sat idle, and a figure would measure that race rather than the route.
    """

    def __init__(self, *, env: dict, workers: int, threads: int, log_path: str, max_connections: int):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.workers = workers
        self.threads = threads
        self.worker_connections = -(-max_connections // workers)
        self.log_path = log_path
        self.proc = None

    def start(self, timeout: float = 30) -> None:
        cmd = [
            os.path.join(BIN, "gunicorn"), "engagement_platform.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "--threads", str(self.threads),
            "--timeout", "120", "--backlog", "2048", "--worker-connections", str(self.worker_connections),
        ]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not become ready in {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
