#!/usr/bin/env python3
"""The container entry point of every service image: one image per service, one command per role.

    ops.py api          the HTTP API only (RUN_WORKERS=false): scale it on request load
    ops.py worker       outbox relay + consumers (RUN_WORKERS=true), still serving /healthz, /readyz, /metrics
    ops.py migrate      bring the service's database to the latest Alembic revision, then exit
    ops.py topics       create the topics the service writes to (its own and the dead-letter topics), then exit
    ops.py healthcheck  exit 0 when GET /readyz (or /healthz with --live) answers 200 on this container's port
    ops.py kafka-access PLAN   as the Kafka admin: create the topics, SCRAM credentials and ACLs of an access plan
                        (written by `make compose-secrets` or `make k8s-dev-secrets`, from scripts/kafka_access.py),
                        then exit

The service is named by $SERVICE (baked into the image); the port by $PORT (8000). Everything else is the service's
own settings, read from the environment as usual (REGISTRY_DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, JWT_SECRET, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import urllib.request
from typing import Any


def service_name() -> str:
    """The service this image runs ($SERVICE)."""
    name = os.environ.get("SERVICE", "")
    if not name:
        raise SystemExit("ops.py: set SERVICE (registry, matching, events or notify)")
    return name


def settings() -> Any:
    """The service's settings, read from the environment."""
    return importlib.import_module(f"{service_name()}.config").Settings()


def find_spec(app: Any) -> Any:
    """The ServiceSpec a service's app was built from (kept on app.state by common.service)."""
    return app.state.spec


def topics_of(spec: Any) -> list[str]:
    """Every topic a service writes to: what it publishes, and the dead-letter topics of what it consumes."""
    from common.service import topics_for

    return topics_for(spec)


def uvicorn_argv(port: int) -> list[str]:
    """The uvicorn command line of the service's app factory."""
    from common.server import uvicorn_command

    # 0.0.0.0 inside a container: the pod/container network is the boundary
    return uvicorn_command(service_name(), host="0.0.0.0", port=port, behind_proxy=True)  # noqa: S104


def run_server(*, workers: bool) -> None:
    """Replace this process with uvicorn serving the app, with or without the background workers."""
    os.environ["RUN_WORKERS"] = "true" if workers else "false"
    port = int(os.environ.get("PORT", "8000"))
    argv = uvicorn_argv(port)
    os.execv(argv[0], argv)  # noqa: S606 (the server replaces this process: signals reach uvicorn)


def migrate() -> None:
    """Run the service's Alembic migrations to head."""
    from common.migrations import upgrade

    config = importlib.import_module(f"{service_name()}.config")
    upgrade(config.MIGRATIONS, config.Settings().database_url)
    print(f"{service_name()}: database at head", flush=True)


def create_topics() -> None:
    """Create the service's topics with the configured partitions and replication (existing ones are kept)."""
    from common.service import ensure_topics

    s = settings()
    spec = find_spec(importlib.import_module(f"{service_name()}.main").create_app(s))
    topics = topics_of(spec)

    async def go() -> None:
        delay = 1.0
        for attempt in range(30):
            try:
                await ensure_topics(s.kafka_bootstrap_servers, topics, partitions=s.topic_partitions,
                                    replication=s.topic_replication, security=s.kafka_security)
                return
            except Exception as exc:  # the broker may still be starting: retry with backoff, then give up
                print(f"broker not ready ({exc!r}); retry {attempt + 1}", flush=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise SystemExit("could not reach the broker")

    asyncio.run(go())
    print(f"{service_name()}: topics ready: {', '.join(topics)}", flush=True)


def kafka_access(plan_path: str) -> None:
    """Apply an access plan as the admin principal the environment names (KAFKA_SASL_USERNAME, ...): SCRAM
    credentials ({"scram": {user: password}}), ACLs ({"acls": [[principal, resource, name, pattern, operation]]}) and,
    when listed, topics ({"topics": {name: {"partitions": n, "replication": r, "config": {...}}}}); retries while the
    broker starts. Reads only Kafka settings: it needs no JWT or database configuration."""
    import json
    import time
    from types import SimpleNamespace

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from common import kafka_admin
    from common.config import KafkaSettings

    s = KafkaSettings()
    plan = json.loads(open(plan_path).read())
    acls = [SimpleNamespace(principal=p, resource=r, name=n, pattern=pt, operation=o)
            for p, r, n, pt, o in plan["acls"]]
    topics = plan.get("topics") or {}

    async def go() -> None:
        delay = 1.0
        for attempt in range(30):
            admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers, client_id="kafka-access",
                                        **s.kafka_security.client_kwargs())
            try:
                await admin.start()
                existing = set(await admin.list_topics())
                missing = [NewTopic(name, num_partitions=t["partitions"], replication_factor=t["replication"],
                                    topic_configs={k: str(v) for k, v in t.get("config", {}).items()})
                           for name, t in topics.items() if name not in existing]
                if missing:
                    try:
                        await admin.create_topics(missing)
                    except TopicAlreadyExistsError:
                        pass
                await kafka_admin.upsert_scram(admin, plan["scram"])
                created = await kafka_admin.create_acls(admin, acls)
                print(f"kafka-access: {len(plan['scram'])} principals, {created} ACLs, "
                      f"{len(missing)} of {len(topics)} topics created", flush=True)
                break
            except Exception as exc:  # the broker may still be starting: retry with backoff, then give up
                print(f"broker not ready ({exc!r}); retry {attempt + 1}", flush=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                await admin.close()
        else:
            raise SystemExit("could not apply the Kafka access plan")
        try:  # services started right after this job must not be refused
            who = await kafka_admin.wait_enforced(
                s.kafka_bootstrap_servers, acls=acls, passwords=plan["scram"], protocol=s.kafka_security_protocol,
                cafile=s.kafka_ssl_cafile, deadline=time.monotonic() + 60)
        except TimeoutError as exc:
            raise SystemExit(str(exc)) from exc
        print(f"kafka-access: enforced (logged in as {who})", flush=True)

    asyncio.run(go())


def healthcheck(*, live: bool) -> int:
    """0 when the local /readyz (or /healthz) answers 200, else 1."""
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/{'healthz' if live else 'readyz'}"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return 0 if resp.status == 200 else 1
    except OSError:
        return 1


def main(argv: list[str] | None = None) -> int:
    """Dispatch one of the commands."""
    ap = argparse.ArgumentParser(description="run one role of a platform service")
    ap.add_argument("command", choices=["api", "worker", "migrate", "topics", "healthcheck", "kafka-access"])
    ap.add_argument("plan", nargs="?", help="kafka-access: the access plan (JSON)")
    ap.add_argument("--live", action="store_true", help="healthcheck: liveness (/healthz) instead of readiness")
    args = ap.parse_args(argv)
    if args.command in ("api", "worker"):
        run_server(workers=args.command == "worker")
    elif args.command == "migrate":
        migrate()
    elif args.command == "topics":
        create_topics()
    elif args.command == "kafka-access":
        kafka_access(args.plan)
    else:
        return healthcheck(live=args.live)
    return 0


if __name__ == "__main__":
    sys.exit(main())
