"""Load with accounting, and faults: gunicorn on a throwaway PostgreSQL and Redis of its own.

    python -m reliability.loadtest --duration 60 --clients 32            # load only
    python -m reliability.loadtest --duration 60 --clients 32 --pg-fault  # PostgreSQL stopped 10 s mid-run
    python -m reliability.loadtest --redis-fault                          # Redis down: fail open / closed

Clients mix partner events, message batches, engagement summaries and reports over keep-alive
connections. Afterwards every answer is checked against the database: each event answered
`recorded: true` is stored exactly once, each one refused (dedupe, 503) is not; each message event of an
accepted batch is stored exactly once, each of a refused batch is not; every per-render counter equals a
count of raw rows; every daily rollup equals `rebuild_rollups`' recomputation and, for all traffic, a
straightforward recount of raw events. Prints one JSON summary and exits non-zero on any failure.
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests

from demo.pdf import simple_pdf
from reliability.servers import RUN_SECRET_KEY, Gunicorn, ThrowawayPostgres, ThrowawayRedis, base_env, manage

PDF = simple_pdf("Quote Q-1042", ["40 hours of consulting."])  # a real, readable one-page PDF
CHANNELS = [str(uuid.UUID(int=(0x0196A000 << 96) | (0x7000 << 64) | (0x8 << 60) | i)) for i in range(1, 4)]
SENDERS = ["news@alpha.example", "billing@beta.example"]
FAIL_FAST_SECONDS = 5.0
RECOVERY_SECONDS = 5.0


@dataclass
class Outcome:
    kind: str
    started: float
    finished: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    body: object = None
    payload: dict = field(default_factory=dict)


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []

    def add(self, outcome: Outcome):
        with self.lock:
            self.outcomes.append(outcome)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Client(threading.Thread):
    def __init__(self, index, base_url, raw_key, render_ids, stop_at, recorder, seed):
        super().__init__(daemon=True)
        self.index, self.base_url, self.render_ids, self.stop_at = index, base_url, render_ids, stop_at
        self.recorder = recorder
        self.random = random.Random(seed)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {raw_key}"
        self.sent_batches: list[dict] = []

    def run(self):
        while time.time() < self.stop_at:
            roll = self.random.random()
            if roll < 0.40:
                self.post_event()
            elif roll < 0.65:
                self.post_batch()
            elif roll < 0.85:
                self.get("summary", f"/v1/renders/{self.random.choice(self.render_ids)}/engagement")
            else:
                self.get("report", "/v1/reports/engagement", params={"group_by": self.random.choice(["day", "week"])})

    def request(self, kind, method, path, payload=None, **kwargs) -> Outcome:
        started = time.time()
        status, body = None, None
        try:
            response = self.session.request(method, self.base_url + path, timeout=30, **kwargs)
            status = response.status_code
            try:
                body = response.json()
            except ValueError:
                body = response.text[:200]
            if status >= 400:
                body = {"body": body, "content_type": response.headers.get("Content-Type"),
                        "request_id": response.headers.get("X-Request-Id")}
        except requests.RequestException as exc:
            body = repr(exc)
            self.session.close()  # a broken keep-alive connection is not reused
        outcome = Outcome(kind, started, time.time(), status, body, payload or {})
        self.recorder.add(outcome)
        return outcome

    def post_event(self):
        load_id = uuid.uuid4().hex
        ip = f"10.{self.index}.{self.random.randrange(4)}.{self.random.randrange(50)}"  # some repeats: dedupe
        render_id = self.random.choice(self.render_ids)
        event_type = self.random.choice(["viewed", "downloaded", "printed"])
        self.request("event", "POST", f"/v1/renders/{render_id}/events",
                     {"load_id": load_id, "render_id": render_id},
                     json={"eventType": event_type, "metadata": {"loadId": load_id}},
                     headers={"X-Forwarded-For": ip})

    def post_batch(self):
        if self.sent_batches and self.random.random() < 0.1:
            batch = self.random.choice(self.sent_batches)  # a client retry: all duplicates
        else:
            batch = self.new_batch()
        outcome = self.request("batch", "POST", "/v1/messages/events", {"batch": batch}, json=batch)
        if outcome.status == 200:
            self.sent_batches.append(batch)

    def new_batch(self) -> dict:
        now = datetime.now(UTC)
        events = []
        for _ in range(self.random.randint(1, 20)):
            message = uuid.uuid4().hex
            recipient = f"user{self.random.randrange(200)}@{self.random.choice(['x.example', 'y.example'])}"
            if self.random.random() < 0.3:
                recipient = recipient.upper()
            for kind in self.random.sample(["sent", "delivered", "opened", "clicked"], self.random.randint(1, 4)):
                events.append({
                    "id": uuid.uuid4().hex, "type": kind, "messageId": message,
                    "channel": self.random.choice(CHANNELS), "from": self.random.choice(SENDERS),
                    "recipient": recipient,
                    "occurredAt": iso(now - timedelta(hours=self.random.randrange(0, 72),
                                                      seconds=self.random.randrange(3600))),
                })
        return {"events": events}

    def get(self, kind, path, params=None):
        self.request(kind, "GET", path, params=params)


# -- the run ---------------------------------------------------------------------------------------------

def django_setup(database_url: str):
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement_platform.settings")
    os.environ.setdefault("SECRET_KEY", RUN_SECRET_KEY)  # DEBUG is off here too
    import django

    django.setup()


def seed(env: dict) -> tuple[str, str]:
    project_out = manage("createproject", f"load-{uuid.uuid4().hex[:6]}", "--rate-limit", "100000000",
                         "--retention-days", "3650", env=env)
    project_id = project_out.stdout.strip().splitlines()[-1]
    key_out = manage("createapikey", "--project", project_id, "--name", "load", env=env)
    return project_id, key_out.stdout.strip().splitlines()[-1]


def upload_renders(base_url: str, raw_key: str, count: int) -> list[str]:
    ids = []
    for i in range(count):
        response = requests.post(base_url + "/v1/renders", headers={"Authorization": f"Bearer {raw_key}"},
                                 files={"file": (f"r{i}.pdf", PDF, "application/pdf")}, data={"name": f"r{i}"},
                                 timeout=30)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def is_contract_503(outcome: Outcome) -> bool:
    if outcome.status != 503 or not isinstance(outcome.body, dict):
        return False
    body, content_type = outcome.body["body"], outcome.body["content_type"] or ""
    if not isinstance(body, dict):
        return False
    if outcome.kind in ("batch", "report"):
        return (content_type.startswith("application/problem+json") and body.get("code") == "service_unavailable"
                and body.get("request_id") == outcome.body["request_id"])
    error = body.get("error", {})
    return (content_type == "application/json" and error.get("code") == "service_unavailable"
            and error.get("requestId") == outcome.body["request_id"])


def account(project_id: str, outcomes: list[Outcome], env: dict) -> dict:
    """Compare every answer with the database. Returns figures and a list of problems."""
    from django.db.models import Count

    from renders.models import LINK_OPENS_COUNTER, EngagementCounter, EngagementEvent, machine_counter_key
    from reports.models import DailyRollup, MessageEvent, RollupGrain

    problems = []
    stored = Counter(EngagementEvent.objects.filter(project_id=project_id, metadata__has_key="loadId")
                     .values_list("metadata__loadId", flat=True))
    recorded = refused = 0
    for outcome in (o for o in outcomes if o.kind == "event"):
        load_id = outcome.payload["load_id"]
        accepted = outcome.status == 200 and outcome.body == {"recorded": True}
        if accepted:
            recorded += 1
            if stored[load_id] != 1:
                problems.append(f"event {load_id} answered recorded but stored {stored[load_id]} times")
        else:
            refused += 1
            if stored[load_id] != 0:
                problems.append(f"event {load_id} answered {outcome.status} {outcome.body} but stored")
    if sum(stored.values()) != recorded:
        problems.append(f"{sum(stored.values())} load events stored, {recorded} answered recorded")

    # Message events: the ids of every accepted batch exactly once; of a refused batch never (unless resent).
    stored_ids = Counter(MessageEvent.objects.filter(project_id=project_id)
                         .values_list("client_event_id", flat=True))
    accepted_ids, refused_ids, accepted_total = set(), set(), 0
    for outcome in (o for o in outcomes if o.kind == "batch"):
        ids = {e["id"] for e in outcome.payload["batch"]["events"]}
        if outcome.status == 200:
            accepted_ids |= ids
            accepted_total += outcome.body["accepted"]
        else:
            refused_ids |= ids
    refused_ids -= accepted_ids
    for event_id in accepted_ids:
        if stored_ids[event_id] != 1:
            problems.append(f"message event {event_id} accepted but stored {stored_ids[event_id]} times")
    for event_id in refused_ids:
        if stored_ids[event_id]:
            problems.append(f"message event {event_id} of a refused batch is stored")
    if accepted_total != len(accepted_ids) or sum(stored_ids.values()) != len(accepted_ids):
        problems.append(f"accepted counts {accepted_total}, distinct accepted ids {len(accepted_ids)}, "
                        f"stored {sum(stored_ids.values())}")

    # Per-render counters equal a count of raw rows.
    raw = Counter()
    for row in EngagementEvent.objects.filter(project_id=project_id).values("render_id", "event_type").annotate(
            n=Count("id")):
        raw[(row["render_id"], row["event_type"])] = row["n"]
    for row in EngagementEvent.objects.filter(project_id=project_id, event_type="viewed",
                                              share__isnull=False).values("render_id").annotate(n=Count("id")):
        raw[(row["render_id"], LINK_OPENS_COUNTER)] = row["n"]
    for row in EngagementEvent.objects.filter(project_id=project_id, traffic="machine").values(
            "render_id", "event_type", "share_id").annotate(n=Count("id")):  # the machine counters (section 6)
        raw[(row["render_id"], machine_counter_key(row["event_type"]))] += row["n"]
        if row["event_type"] == "viewed" and row["share_id"] is not None:
            raw[(row["render_id"], machine_counter_key(LINK_OPENS_COUNTER))] += row["n"]
    counters = Counter()  # a count is the sum of its shards
    for c in EngagementCounter.objects.filter(project_id=project_id):
        counters[(c.render_id, c.key)] += c.count
    counters = +counters
    if counters != +raw:
        problems.append(f"counters differ from raw rows: {dict(counters - raw)} / {dict(raw - counters)}")

    # Rollups: all traffic recounted here from raw rows; every grain against rebuild_rollups.
    def rollup_rows():
        return sorted(DailyRollup.objects.filter(project_id=project_id).values_list(
            "day", "grain", "channel_key", "domain", "sent", "delivered", "opens", "clicks", "unique_opens",
            "unique_clicks"))

    recount = defaultdict(lambda: Counter())
    uniques = defaultdict(set)
    for occurred_at, kind, recipient in MessageEvent.objects.filter(project_id=project_id).values_list(
            "occurred_at", "type", "message__recipient"):
        day = occurred_at.astimezone(UTC).date()
        recount[day][kind] += 1
        if kind in ("opened", "clicked"):
            uniques[(day, kind)].add(recipient.lower())
    expected_all = sorted((day, c["sent"], c["delivered"], c["opened"], c["clicked"], len(uniques[(day, "opened")]),
                           len(uniques[(day, "clicked")])) for day, c in recount.items())
    before = rollup_rows()
    actual_all = sorted((r[0], *r[4:]) for r in before if r[1] == RollupGrain.ALL)
    if actual_all != expected_all:
        problems.append(f"all-traffic rollups differ from raw rows: {actual_all[:3]} vs {expected_all[:3]}")
    manage("rebuild_rollups", "--project", project_id, env=env)
    after = rollup_rows()
    if before != after:
        problems.append(f"rollups changed on rebuild_rollups: {len(set(before) ^ set(after))} rows differ")
    return {"events_recorded": recorded, "events_not_recorded": refused, "message_events_accepted": len(accepted_ids),
            "message_events_stored": sum(stored_ids.values()), "rollup_rows": len(after),
            "counters_checked": len(counters), "records_lost": len([p for p in problems if "but stored" in p
                                                                      or "stored 0" in p]),
            "problems": problems[:50], "problem_count": len(problems)}


def latency_summary(outcomes) -> dict:
    durations = sorted(o.finished - o.started for o in outcomes)
    if not durations:
        return {}
    return {"p50_ms": round(durations[len(durations) // 2] * 1000, 1),
            "p99_ms": round(durations[int(len(durations) * 0.99)] * 1000, 1),
            "max_ms": round(durations[-1] * 1000, 1)}


def run_load(args) -> dict:
    pg, redis_server, server = ThrowawayPostgres(), ThrowawayRedis(), None
    try:
        pg.start()
        pg.create_database("ep_load")
        database_url = pg.database_url("ep_load")
        redis_server.start()
        env = base_env(DATABASE_URL=database_url, CACHE_URL=redis_server.url, RATE_LIMIT_FAIL_OPEN="1",
                       DATABASE_CONNECT_TIMEOUT="2", MEDIA_ROOT=os.path.join(pg.dir, "media"))
        manage("migrate", "--noinput", "-v", "0", env=env)
        project_id, raw_key = seed(env)
        server = Gunicorn(env, workers=args.workers, threads=args.threads)
        server.start()
        render_ids = upload_renders(server.base_url, raw_key, 8)

        recorder = Recorder()
        started = time.time()
        stop_at = started + args.duration
        clients = [Client(i, server.base_url, raw_key, render_ids, stop_at, recorder, seed=args.seed * 1000 + i)
                   for i in range(args.clients)]
        for client in clients:
            client.start()
        fault = {}
        if args.pg_fault:
            time.sleep(max(0.0, args.fault_at))
            fault["down_at"] = time.time()
            pg.stop("fast")
            time.sleep(args.fault_seconds)
            fault["restart_at"] = time.time()
            pg.start()
            fault["up_at"] = time.time()
        for client in clients:
            client.join(timeout=args.duration + 120)
        hung = sum(client.is_alive() for client in clients)
        elapsed = time.time() - started
        outcomes = list(recorder.outcomes)

        django_setup(database_url)
        figures = account(project_id, outcomes, env)
        result = judge(outcomes, fault, hung, args)
        result.update({"duration_s": round(elapsed, 1), "clients": args.clients, "workers": args.workers,
                       "threads": args.threads, "requests": len(outcomes),
                       "requests_per_s": round(len(outcomes) / elapsed, 1),
                       "by_kind": dict(Counter(o.kind for o in outcomes)), "latency": latency_summary(outcomes),
                       "accounting": figures})
        result["ok"] = result["ok"] and figures["problem_count"] == 0
        server_log = server.read_log()
        result["server_5xx_tracebacks"] = server_log.count("Traceback")
        return result
    finally:
        if server is not None:
            server.cleanup()
        redis_server.stop()
        pg.destroy()


def judge(outcomes, fault, hung, args) -> dict:
    problems = []
    statuses = Counter(o.status for o in outcomes)
    if fault:
        down, up = fault["down_at"], fault["up_at"]
        # A request that overlaps the outage may fail, but only as a contract 503, and fast.
        in_outage = [o for o in outcomes if o.finished >= down and o.started <= up + RECOVERY_SECONDS]
        outside = [o for o in outcomes if o.finished < down or o.started > up + RECOVERY_SECONDS]
        failed = [o for o in in_outage if o.status != 200]
        bad_shape = [o for o in failed if not is_contract_503(o)]
        slow = [o for o in failed if o.finished - o.started > FAIL_FAST_SECONDS]
        during = [o for o in outcomes if o.started >= down + 1 and o.finished <= fault["restart_at"]]
        first_ok_after = min((o.finished for o in outcomes if o.started >= up and o.status == 200), default=None)
        last_fail = max((o.finished for o in outcomes if o.status != 200), default=up)
        fault.update({
            "outage_s": round(up - down, 1),
            "requests_during_outage": len(during),
            "answered_503_during_outage": sum(o.status == 503 for o in during),
            "max_failure_latency_ms": round(max((o.finished - o.started for o in failed), default=0) * 1000, 1),
            "first_success_after_up_s": round(first_ok_after - up, 2) if first_ok_after else None,
            "last_failure_after_up_s": round(last_fail - up, 2),
        })
        if bad_shape:
            problems.append(f"{len(bad_shape)} failures during the outage were not contract 503s: "
                            f"{[(o.kind, o.status, str(o.body)[:200]) for o in bad_shape[:3]]}")
        if slow:
            problems.append(f"{len(slow)} failures took longer than {FAIL_FAST_SECONDS}s")
        if during and not any(o.status == 503 for o in during):
            problems.append("no request failed while the database was down: the fault did not bite")
        if first_ok_after is None or first_ok_after - up > RECOVERY_SECONDS:
            problems.append("the service did not recover within 5 s of the database coming back")
        if last_fail - up > RECOVERY_SECONDS:
            problems.append(f"failures went on {last_fail - up:.1f}s after the database came back")
    else:
        outside = outcomes
    errors = [o for o in outside if o.status != 200]
    if errors:
        problems.append(f"{len(errors)} errors outside any fault: "
                        f"{[(o.kind, o.status, str(o.body)[:200]) for o in errors[:5]]}")
    if hung:
        problems.append(f"{hung} client threads still waiting: hung requests")
    return {"ok": not problems, "problems": problems, "statuses": {str(k): v for k, v in statuses.items()},
            "errors_outside_faults": len(errors), "fault": fault or None}


def run_redis_fault(args) -> dict:
    """Redis stopped under traffic: fail open keeps answering 200; fail closed answers a contract 503."""
    pg, redis_server, servers = ThrowawayPostgres(), ThrowawayRedis(), []
    try:
        pg.start()
        pg.create_database("ep_redis")
        redis_server.start()
        common = {"DATABASE_URL": pg.database_url("ep_redis"), "CACHE_URL": redis_server.url,
                  "MEDIA_ROOT": os.path.join(pg.dir, "media")}
        manage("migrate", "--noinput", "-v", "0", env=base_env(**common))
        project_id, raw_key = seed(base_env(**common))
        result = {}
        for fail_open in ("1", "0"):
            server = Gunicorn(base_env(**common, RATE_LIMIT_FAIL_OPEN=fail_open), workers=2, threads=4)
            servers.append(server)
            server.start()
        headers = {"Authorization": f"Bearer {raw_key}"}
        session = requests.Session()

        def statuses(server, count=40):
            out = Counter()
            worst = 0.0
            for _ in range(count):
                started = time.time()
                response = session.get(server.base_url + "/v1/renders", headers=headers, timeout=30)
                worst = max(worst, time.time() - started)
                code = response.json().get("error", {}).get("code") if response.status_code != 200 else "ok"
                out[f"{response.status_code} {code}"] += 1
            return dict(out), round(worst * 1000, 1)

        result["redis_up"] = {"fail_open": statuses(servers[0])[0], "fail_closed": statuses(servers[1])[0]}
        redis_server.stop()
        (open_down, open_worst), (closed_down, closed_worst) = statuses(servers[0]), statuses(servers[1])
        result["redis_down"] = {"fail_open": open_down, "fail_closed": closed_down,
                                "worst_latency_ms": max(open_worst, closed_worst)}
        health = [session.get(s.base_url + "/healthz", timeout=5).status_code for s in servers]
        redis_server.start()  # a new, empty Redis on the same port: counting resumes
        result["redis_back"] = {"fail_closed": statuses(servers[1])[0]}
        problems = []
        if open_down != {"200 ok": 40}:
            problems.append(f"fail-open server did not keep answering: {open_down}")
        if closed_down != {"503 service_unavailable": 40}:
            problems.append(f"fail-closed server did not refuse with 503: {closed_down}")
        if result["redis_back"]["fail_closed"] != {"200 ok": 40}:
            problems.append("fail-closed server did not recover when Redis came back")
        if health != [200, 200]:
            problems.append(f"health checks failed while Redis was down: {health}")
        if result["redis_down"]["worst_latency_ms"] > FAIL_FAST_SECONDS * 1000:
            problems.append("requests hung while Redis was down")
        result.update({"ok": not problems, "problems": problems, "project": project_id})
        return result
    finally:
        for server in servers:
            server.cleanup()
        redis_server.stop()
        pg.destroy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg-fault", action="store_true", help="stop PostgreSQL for --fault-seconds mid-run")
    parser.add_argument("--fault-at", type=float, default=None, help="seconds into the run (default: a third)")
    parser.add_argument("--fault-seconds", type=float, default=10)
    parser.add_argument("--redis-fault", action="store_true", help="only the Redis fail-open/closed run")
    parser.add_argument("--output", help="also write the JSON summary to this file")
    args = parser.parse_args(argv)
    if args.fault_at is None:
        args.fault_at = args.duration / 3
    if args.pg_fault and args.fault_at + args.fault_seconds + RECOVERY_SECONDS * 2 > args.duration:
        parser.error("the run must last past the fault and its recovery window")
    result = run_redis_fault(args) if args.redis_fault else run_load(args)
    result["run"] = ("redis-fault" if args.redis_fault else "pg-fault" if args.pg_fault else "load")
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
