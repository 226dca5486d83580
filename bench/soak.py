"""Broker soak: nothing lost, duplicated or crashed (``python -m bench.soak``, a step of ``make bench``).

For the embedded broker (kombu's filesystem transport made atomic in
``config/broker.py``) and for Redis, ``--producers`` processes send
``--tasks`` messages between them (``bench.soak_record.delay(n)``, each its
share of ``0..tasks-1``) while ``--workers`` Celery worker processes
(``celery -A bench.soak_app worker``: production's pool, concurrency,
prefetch and late acknowledgement, see ``bench/soak_app.py``) consume them.
Every delivery appends ``n`` to a file, so after the soak:

- processed = distinct numbers recorded; lost = sent − processed;
- duplicated = deliveries recorded − distinct numbers;
- worker crashes = workers that exited before the soak ended, logged
  "Unrecoverable error", or did not exit 0 after the closing SIGTERM;
- left in broker = soak messages still queued after the workers stopped
  (a message run but not acknowledged: a duplicate on the next start).

Producers start once every worker consumes. The soak waits until every
sent message is processed, ``--timeout`` passes, or nothing new ran for
``--stall`` seconds after the last send, then stops the workers with
SIGTERM. Each broker gets a fresh temporary var dir (so a fresh broker
folder); Redis uses ``--redis-url`` (database 11 by default), flushed
first — that database only. If Redis cannot be reached the Redis soak is
reported skipped, with the reason, not failed. Exit status 1 if any soak lost, duplicated, left or crashed anything.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from config.processes import BASE_DIR

REDIS_URL = "redis://127.0.0.1:6379/11"
QUEUE = "celery"  # Celery's default queue, where bench.soak_record goes
LOG_TAIL_LINES = 30


def _env(broker_url: str, scratch: Path, transport: str) -> dict[str, str]:
    """The environment of every soak process: config.settings as deployed, a throw-away var dir, this broker."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PROMPTCTL_VAR_DIR": str(scratch / "var"),
        "PROMPTCTL_SOAK_RECORDS": str(scratch / "records"),
        "PROMPTCTL_SOAK_READY": str(scratch / "ready"),
        "CELERY_BROKER_URL": broker_url,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "PROMPTCTL_AUDIT_KEY": secrets.token_urlsafe(48),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    if transport:
        env["PROMPTCTL_SOAK_TRANSPORT"] = transport
    return env


def _redis_ready(url: str) -> str:
    """'' when Redis at ``url`` answers and its database has been flushed; otherwise why the soak is skipped."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        client.ping()
        client.flushdb()  # the database of ``url`` only
    except redis.RedisError as error:
        return f"Redis at {url} is not reachable: {error}"
    return ""


def _records(folder: Path) -> tuple[int, set[int]]:
    """(deliveries recorded, distinct numbers) across every worker process's file."""
    deliveries, distinct = 0, set()
    for path in folder.glob("*.txt"):
        for line in path.read_text().splitlines():
            if line.strip():
                deliveries += 1
                distinct.add(int(line))
    return deliveries, distinct


def _left_in_broker(broker: str, scratch: Path, redis_url: str) -> int:
    """Soak messages still in the broker: queued, or delivered and never acknowledged (Redis)."""
    if broker == "filesystem":
        folder = scratch / "var" / "broker" / "out"
        return sum(1 for name in os.listdir(folder) if name.partition(".")[2] == f"{QUEUE}.msg")
    import redis

    client = redis.Redis.from_url(redis_url)
    return int(client.llen(QUEUE)) + int(client.hlen("unacked"))


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])


def _start_workers(count: int, env: dict[str, str], scratch: Path) -> list[tuple[subprocess.Popen, Path]]:
    workers = []
    for number in range(1, count + 1):
        log = scratch / f"worker{number}.log"
        argv = [sys.executable, "-m", "celery", "-A", "bench.soak_app", "worker", "--loglevel=WARNING"]
        argv += ["-n", f"soak{number}@%h"]
        with log.open("wb") as out:
            workers.append((subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT), log))
    return workers


def _start_producers(options: argparse.Namespace, env: dict[str, str]) -> list[subprocess.Popen]:
    bounds = [options.tasks * index // options.producers for index in range(options.producers + 1)]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "bench.soak", "--produce", f"{start}:{stop}", "--payload", str(options.payload)],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start, stop in zip(bounds, bounds[1:], strict=False)
    ]


def _await_ready(workers: list[tuple[subprocess.Popen, Path]], folder: Path, *, seconds: float = 120.0) -> None:
    """Wait until every worker consumes (or has exited: counted as a crash later), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        exited = sum(1 for process, _log in workers if process.poll() is not None)
        if len(os.listdir(folder)) + exited >= len(workers):
            return
        time.sleep(0.1)


def _stop_workers(workers: list[tuple[subprocess.Popen, Path]]) -> list[int | None]:
    """SIGTERM (Celery's warm shutdown) to every live worker; SIGKILL after 60 s. Exit codes, in order."""
    for process, _log in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for process, _log in workers:
        try:
            codes.append(process.wait(timeout=60))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            codes.append(None)  # did not stop: counted as a crash
    return codes


def soak(broker: str, options: argparse.Namespace) -> dict:
    """Run one soak against ``broker`` ('filesystem' or 'redis'); the report's row for it."""
    result: dict = {
        "broker": broker,
        "tasks": options.tasks,
        "producers": options.producers,
        "workers": options.workers,
        "payload_bytes": options.payload,
    }
    if broker == "redis":
        reason = _redis_ready(options.redis_url)
        if reason:
            return {**result, "skipped": reason}
        broker_url = options.redis_url
    else:
        broker_url = "filesystem://localhost//"
    scratch = Path(tempfile.mkdtemp(prefix=f"promptctl-soak-{broker}-"))
    (scratch / "records").mkdir()
    (scratch / "ready").mkdir()
    env = _env(broker_url, scratch, options.transport if broker == "filesystem" else "")
    workers = _start_workers(options.workers, env, scratch)
    _await_ready(workers, scratch / "ready")
    started = time.monotonic()
    producers = _start_producers(options, env)
    early_exits: dict[int, int] = {}
    sent: set[int] | None = None
    send_errors: list[str] = []
    distinct: set[int] = set()
    progress = started  # when the last new number was recorded (or the soak started)
    stalled = False
    while time.monotonic() - started < options.timeout:
        for index, (process, _log) in enumerate(workers):
            if process.poll() is not None and index not in early_exits:
                early_exits[index] = process.returncode
        if sent is None and all(producer.poll() is not None for producer in producers):
            sent = set()
            for producer in producers:
                out, err = producer.communicate()
                if producer.returncode != 0:
                    send_errors.append(f"producer exited {producer.returncode}: {err.strip()[-500:]}")
                    continue
                share = json.loads(out.strip().splitlines()[-1])
                sent.update(range(share["start"], share["stop"]))
                sent.difference_update(share["failed"])
                send_errors += share["errors"]
            result["send_seconds"] = round(time.monotonic() - started, 2)
        _deliveries, recorded = _records(scratch / "records")
        if len(recorded) != len(distinct):
            distinct, progress = recorded, time.monotonic()
        if sent is not None and sent <= distinct:
            break
        if sent is not None and time.monotonic() - progress > options.stall:
            stalled = True  # a trivial task: nothing new for this long means the rest will not come
            break
        if sent is not None and len(early_exits) == len(workers):
            break  # nobody left to consume what was sent
        time.sleep(0.25)
    wall = time.monotonic() - started
    for producer in producers:
        if producer.poll() is None:
            producer.kill()
            send_errors.append("producer still sending at the timeout")
    sent = sent or set()
    codes = _stop_workers(workers)
    deliveries, distinct = _records(scratch / "records")  # late deliveries during the warm shutdown count too
    left = _left_in_broker(broker, scratch, options.redis_url)
    banner = [line for line in workers[0][1].read_text(errors="replace").splitlines() if ".> transport:" in line]
    crashes = []
    for index, ((_process, log), code) in enumerate(zip(workers, codes, strict=True)):
        text = log.read_text(errors="replace")
        if index in early_exits or code != 0 or "Unrecoverable error" in text:
            why = f"exited {early_exits[index]} during the soak" if index in early_exits else f"exit code {code}"
            crashes.append({"worker": index + 1, "why": why, "exit_code": code, "log_tail": _tail(log)})
    result.update(
        {
            "transport": banner[0].split("transport:", 1)[1].split("://", 1)[0].strip() if banner else "?",
            "sent": len(sent),
            "processed": len(distinct & sent),
            "lost": len(sent - distinct),
            "duplicated": deliveries - len(distinct),
            "worker_crashes": len(crashes),
            "left_in_broker": left,
            "send_errors": send_errors[:20],
            "timed_out": wall >= options.timeout,
            "stalled": stalled,
            "wall_seconds": round(wall, 2),
            "tasks_per_second": round(len(distinct & sent) / wall, 1) if wall else 0.0,
            "worker_exit_codes": codes,
            "deliveries_per_worker_process": sorted(
                (len(path.read_text().splitlines()) for path in (scratch / "records").glob("*.txt")), reverse=True
            ),
            "crashes": crashes,
        }
    )
    if not options.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        result["scratch"] = str(scratch)
    return result


def failed(row: dict) -> bool:
    if "skipped" in row:
        return False
    bad = ("lost", "duplicated", "worker_crashes", "left_in_broker")
    return any(row[key] for key in bad) or bool(row["send_errors"]) or row["sent"] < row["tasks"]


def _table(rows: list[dict]) -> str:
    lines = [
        "| broker | transport | sent | processed | lost | duplicated | worker crashes | left in broker | wall (s) | tasks/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['broker']} | skipped: {row['skipped']} |||||||||")
            continue
        lines.append(
            f"| {row['broker']} | {row['transport']} | {row['sent']} | {row['processed']} | {row['lost']} | {row['duplicated']} "
            f"| {row['worker_crashes']} | {row['left_in_broker']} | {row['wall_seconds']} | {row['tasks_per_second']} |"
        )
    return "\n".join(lines)


def produce(bounds: str, payload: int) -> int:
    """Producer process: send ``start..stop-1``; print one JSON line with what could not be sent."""
    from bench.soak_app import soak_record

    start, stop = (int(part) for part in bounds.split(":"))
    padding = "x" * payload
    failed_numbers, errors = [], []
    for number in range(start, stop):
        try:
            soak_record.delay(number, padding)
        except Exception as error:  # noqa: BLE001 - a send that fails is reported, not fatal
            failed_numbers.append(number)
            errors.append(f"{number}: {error!r}")
    print(json.dumps({"start": start, "stop": stop, "failed": failed_numbers, "errors": errors[:5]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["filesystem", "redis", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every task (default 300)")
    parser.add_argument(
        "--stall", type=float, default=30.0, help="stop once everything is sent and nothing new ran for this long"
    )
    parser.add_argument("--redis-url", default=os.environ.get("PROMPTCTL_SOAK_REDIS_URL", REDIS_URL))
    parser.add_argument("--payload", type=int, default=0, help="bytes of padding added to each message (default 0)")
    parser.add_argument("--json", help="write the report to this file")
    parser.add_argument(
        "--transport",
        default="",
        help="filesystem only, for comparison: another kombu transport class (kombu.transport.filesystem:Transport)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders (logs, records)")
    parser.add_argument("--produce", help=argparse.SUPPRESS)  # internal: a producer process's share
    options = parser.parse_args(argv)
    if options.produce:
        return produce(options.produce, options.payload)
    brokers = ["filesystem", "redis"] if options.broker == "both" else [options.broker]
    rows = [soak(broker, options) for broker in brokers]
    print(_table(rows))
    for row in rows:
        for crash in row.get("crashes", []):
            print(f"\n{row['broker']} worker {crash['worker']}: {crash['why']}\n{crash['log_tail']}")
        for error in row.get("send_errors", []):
            print(f"{row['broker']} send error: {error}")
    if options.json:
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(json.dumps({"soaks": rows}, indent=2) + "\n")
    return 1 if any(failed(row) for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
