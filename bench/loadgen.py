"""wrk (C, epoll event loop) as the load generator, driven by the Lua scripts in bench/lua/."""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

LUA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lua")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_seconds: float  # wrk's own user+system CPU time
    machine_busy: float  # share of all cores busy during the run (every process on the box)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_share(self) -> float:
        """wrk's CPU use as a share of one core over the run."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def wrk_path() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    return found


def run_wrk(url: str, *, script: str, workdir: str, duration: float, connections: int, threads: int = 1,
            env: dict | None = None) -> WrkResult:
    """Run wrk with bench/lua/common.lua + `script` against `url`; return its summary."""
    combined = os.path.join(workdir, f"wrk-{script}")
    with open(combined, "w") as out:
        for name in ("common.lua", script):
            with open(os.path.join(LUA_DIR, name)) as src:
                out.write(src.read() + "\n")
    cmd = [wrk_path(), "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
           "--timeout", "30s", "-s", combined, url]
    out_path = combined + ".out"
    with open(out_path, "w+") as out_file:
        proc = subprocess.Popen(cmd, stdout=out_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        busy_before, total_before = cpu_ticks()
        # wait4 on this child alone: its exact CPU time, whatever else this process has run.
        _, status, usage = os.wait4(proc.pid, 0)
        busy_after, total_after = cpu_ticks()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        out = err = out_file.read()
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip() or out.strip()}")
    data = json.loads(line.removeprefix("BENCHJSON "))
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors"))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
    )
