"""Schema fuzzing: schemathesis against /v1/schema on a running server with a seeded project and key.

    python -m reliability.fuzz --cases 2000 --seed 1      # the bounded CI run (deterministic seed)
    python -m reliability.fuzz --cases 20000 --seed 7     # `make fuzz`: a longer one

Starts its own throwaway PostgreSQL (or a temp SQLite file with --sqlite), migrates, seeds a project with a
key, a render and a share, serves the platform with gunicorn (DEBUG off) and runs every operation of the
schema with positive and negative generated data, checking that no answer is a 5xx and that every answer
conforms to the schema (status code, content type, headers, body). Fails when fewer than --cases test
cases ran or any check failed. The real render and share ids are given to one run in two, so the
operations are fuzzed both on live objects and on ids that do not exist.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

from demo.pdf import simple_pdf
from reliability.servers import ROOT, VENV_BIN, Gunicorn, ThrowawayPostgres, base_env, manage

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
])
PDF = simple_pdf("Quote Q-1042", ["40 hours of consulting."])  # a real, readable one-page PDF


def seed(env: dict, base_url: str | None = None) -> dict:
    project = manage("createproject", f"fuzz-{uuid.uuid4().hex[:6]}", "--rate-limit", "100000000",
                     "--retention-days", "3650", env=env).stdout.strip().splitlines()[-1]
    raw_key = manage("createapikey", "--project", project, "--name", "fuzz", env=env).stdout.strip().splitlines()[-1]
    return {"project": project, "key": raw_key}


def seed_objects(base_url: str, raw_key: str) -> dict:
    headers = {"Authorization": f"Bearer {raw_key}"}
    render = requests.post(base_url + "/v1/renders", headers=headers, timeout=30,
                           files={"file": ("fuzz.pdf", PDF, "application/pdf")}, data={"name": "fuzz"})
    render.raise_for_status()
    render_id = render.json()["id"]
    share = requests.post(f"{base_url}/v1/renders/{render_id}/shares", headers=headers, json={"label": "fuzz"},
                          timeout=30)
    share.raise_for_status()
    return {"render_id": render_id, "share_id": share.json()["id"]}


def operation_count(base_url: str) -> int:
    schema = requests.get(base_url + "/v1/schema", headers={"Accept": "application/json"}, timeout=30)
    schema.raise_for_status()
    text = schema.text
    document = json.loads(text) if text.lstrip().startswith("{") else __import__("yaml").safe_load(text)
    return sum(1 for item in document["paths"].values() for method in item
               if method in ("get", "post", "put", "patch", "delete"))


def run_schemathesis(base_url: str, raw_key: str, *, max_examples: int, seed: int, workdir: str,
                     parameters: dict | None, label: str, timeout: float) -> dict:
    config = Path(workdir) / f"schemathesis-{label}.toml"
    lines = ["[generation]", "allow-x00 = true", "unique-inputs = true", ""]
    if parameters:
        lines += ["[parameters]"] + [f'"path.{name}" = "{value}"' for name, value in parameters.items()]
    config.write_text("\n".join(lines) + "\n")
    ndjson = Path(workdir) / f"events-{label}.ndjson"
    junit = Path(workdir) / f"junit-{label}.xml"
    # One worker: with two, hypothesis parses lambda sources from two threads at once, which trips a
    # CPython 3.11 race in ast.parse ("AST constructor recursion depth mismatch") under CPU contention.
    command = [str(VENV_BIN / "schemathesis"), "--config-file", str(config), "run", base_url + "/v1/schema",
               "--url", base_url, "-H", f"Authorization: Bearer {raw_key}", "--checks", CHECKS,
               "--max-examples", str(max_examples), "--seed", str(seed), "--workers", "1", "--no-shrink",
               "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
               "--request-timeout", "10", "--report", "junit,ndjson", "--report-junit-path", str(junit),
               "--report-ndjson-path", str(ndjson), "--no-color", "--output-truncate", "true"]
    if parameters:  # the live objects stay for every other operation: deleting the render is fuzzed on made-up ids
        command += ["--exclude-operation-id", "deleteRender"]
    started = time.time()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return {"label": label, "exit_code": completed.returncode, "seconds": round(time.time() - started, 1),
            "stdout": completed.stdout, "stderr": completed.stderr, "ndjson": str(ndjson), "junit": str(junit),
            **summarize(ndjson)}


def summarize(ndjson: Path) -> dict:
    """Cases and failures from schemathesis' event stream."""
    cases, failures, operations = 0, [], set()
    if not ndjson.exists():
        return {"cases": 0, "failures": ["no event stream written"], "operations": 0}
    for line in ndjson.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for name, payload in event.items():
            if name == "ScenarioFinished" and isinstance(payload, dict):
                recorder = payload.get("recorder") or {}
                cases += len(recorder.get("cases") or {})
                label = recorder.get("label")
                if label:
                    operations.add(label)
                for check_list in (recorder.get("checks") or {}).values():
                    for check in check_list:
                        if str(check.get("status")).lower() == "failure":
                            failure = (check.get("failure_info") or {}).get("failure") or {}
                            failures.append(f"{failure.get('operation') or label}: {check.get('name')}: "
                                            f"{failure.get('title')} {failure.get('message') or ''}"[:300])
    return {"cases": cases, "failures": sorted(set(failures)), "operations": len(operations)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000, help="at least this many generated test cases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sqlite", action="store_true", help="a temp SQLite file instead of a throwaway PostgreSQL")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for each schemathesis pass")
    parser.add_argument("--output", help="also write the JSON summary to this file")
    args = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="ep-fuzz-")
    pg, server = None, None
    try:
        if args.sqlite:
            database_url = f"sqlite:///{workdir}/fuzz.sqlite3"
        else:
            pg = ThrowawayPostgres()
            pg.start()
            pg.create_database("ep_fuzz")
            database_url = pg.database_url("ep_fuzz")
        env = base_env(DATABASE_URL=database_url, MEDIA_ROOT=os.path.join(workdir, "media"),
                       EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
        manage("migrate", "--noinput", "-v", "0", env=env)
        seeded = seed(env)
        server = Gunicorn(env, workers=2, threads=4)
        server.start()
        objects = seed_objects(server.base_url, seeded["key"])
        operations = operation_count(server.base_url)
        # Two passes share the budget: live objects, then ids schemathesis makes up.
        per_pass = math.ceil(args.cases / 2)
        # Hypothesis stops early on operations with few distinct inputs, so ask for more than the share.
        max_examples = max(10, math.ceil(3 * per_pass / max(1, operations)))
        passes = []
        for label, parameters, pass_seed in (("live-ids", objects, args.seed), ("generated-ids", None, args.seed + 1)):
            passes.append(run_schemathesis(server.base_url, seeded["key"], max_examples=max_examples, seed=pass_seed,
                                           workdir=workdir, parameters=parameters, label=label, timeout=args.timeout))
        server_log = server.read_log()
        total_cases = sum(p["cases"] for p in passes)
        failures = [f for p in passes for f in p["failures"]]
        problems = list(failures)
        if total_cases < args.cases:
            problems.append(f"only {total_cases} test cases ran, wanted at least {args.cases}")
        for p in passes:
            if p["exit_code"] != 0 and not p["failures"]:
                problems.append(f"schemathesis pass {p['label']} exited {p['exit_code']}: "
                                f"{(p['stdout'] + p['stderr'])[-2000:]}")
        result = {
            "ok": not problems, "cases": total_cases, "operations": operations, "seed": args.seed,
            "max_examples_per_operation": max_examples, "checks": CHECKS.split(","),
            "passes": [{k: v for k, v in p.items() if k not in ("stdout", "stderr")} for p in passes],
            "server_tracebacks": server_log.count("Traceback"), "problems": problems[:60],
            "database": "sqlite" if args.sqlite else "postgresql",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if not result["ok"]:
            for p in passes:
                print(p["stdout"][-6000:], file=sys.stderr)
        text = json.dumps(result, indent=2)
        print(text)
        if args.output:
            Path(args.output).write_text(text + "\n")
        if result["ok"]:
            shutil.rmtree(workdir, ignore_errors=True)  # kept on failure: the reports name the failing cases
        else:
            print(f"schemathesis reports kept in {workdir}", file=sys.stderr)
        return 0 if result["ok"] else 1
    finally:
        if server is not None:
            server.cleanup()
        if pg is not None:
            pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
