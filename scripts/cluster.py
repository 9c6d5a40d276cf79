#!/usr/bin/env python3
"""A production-shaped Kafka cluster on one machine: three KRaft nodes (each a controller and a broker) on loopback.

    python scripts/cluster.py start [--data DIR] [--port 19092]   # format once, start all three, wait for the quorum
    python scripts/cluster.py stop | status
    python scripts/cluster.py kill N        # SIGKILL node N (1..3), as a crash would
    python scripts/cluster.py stop-node N   # controlled shutdown of node N (leadership moves first)
    python scripts/cluster.py start-node N  # start node N again and wait until it serves

Node N's client listener is PORT + 2(N-1), its controller listener the port after it. Topics default to replication 3
with min.insync.replicas 2 and unclean leader election off, as in production (docs/scaling.md): one node down never
stops an acks=all producer, two down do. Security is the development broker's (scripts/broker.py): SASL_SSL with
SCRAM-SHA-512, the StandardAuthorizer with no access unless an ACL grants it, the same CA and a password per principal
in .local/kafka/security/credentials.json, and every principal's credentials, topics and ACLs set up by the admin once
the nodes serve (`--insecure` for a plaintext cluster, to diagnose). The jars, JVM flags and probes are the broker's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

_spec = importlib.util.spec_from_file_location("broker", Path(__file__).with_name("broker.py"))
broker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broker)

NODES = (1, 2, 3)
DEFAULT_DATA = broker.ROOT / ".local" / "kafka" / "cluster"


def ports(base: int, node: int) -> tuple[int, int]:
    """(client port, controller port) of a node."""
    return base + 2 * (node - 1), base + 2 * (node - 1) + 1


def bootstrap(base: int) -> str:
    """The bootstrap list naming all three nodes."""
    return ",".join(f"127.0.0.1:{ports(base, n)[0]}" for n in NODES)


def _properties(data: Path, base: int, node: int, partitions: int, sec: dict | None) -> str:
    port, controller = ports(base, node)
    voters = ",".join(f"{n}@127.0.0.1:{ports(base, n)[1]}" for n in NODES)
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        *broker._listener_properties(port, controller, sec),
        "controller.listener.names=CONTROLLER",
        f"log.dirs={data / f'node-{node}' / 'logs'}",
        f"num.partitions={partitions}",
        "default.replication.factor=3",
        "min.insync.replicas=2",
        "unclean.leader.election.enable=false",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=3",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=3",
        "transaction.state.log.min.isr=2",
        "share.coordinator.state.topic.replication.factor=3",
        "share.coordinator.state.topic.min.isr=2",
        "group.initial.rebalance.delay.ms=0",
        # A node that stops answering leaves the ISR after this long, which bounds how long acks=all writes to its
        # partitions wait; a shorter session lets the controller fence a crashed node sooner.
        "replica.lag.time.max.ms=10000",
        "broker.session.timeout.ms=6000",
        "broker.heartbeat.interval.ms=1000",
        "controlled.shutdown.enable=true",
        "log.flush.interval.ms=1000",
        f"message.max.bytes={broker._record_limit()}",
        "",
    ])


def _node_dir(data: Path, node: int) -> Path:
    return data / f"node-{node}"


def _format_all(data: Path, base: int, partitions: int, sec: dict | None) -> None:
    """Write each node's properties and format its storage with one shared cluster id (once); a secured cluster's
    metadata starts with the admin's and the inter-broker principal's SCRAM credentials."""
    id_file = data / "cluster.id"
    if not id_file.exists():
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = "-"
        while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: an id must not read like an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        id_file.write_text(cluster_id)
    cluster_id = id_file.read_text().strip()
    scram = []
    if sec:
        for name, password in ((broker.ADMIN, sec["principals"][broker.ADMIN]),
                               (broker.BROKER, sec["internal"][broker.BROKER])):
            scram += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
    for node in NODES:
        d = _node_dir(data, node)
        d.mkdir(parents=True, exist_ok=True)
        props = d / "server.properties"
        props.write_text(_properties(data, base, node, partitions, sec))
        props.chmod(0o600)  # it holds the broker's passwords
        if not (d / "logs" / "meta.properties").exists():
            subprocess.run(broker._java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                                            "--ignore-formatted", *scram, heap="128m"),
                           check=True, capture_output=True, text=True)


def _pid(data: Path, node: int) -> int | None:
    pidfile = _node_dir(data, node) / "broker.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if broker._alive(pid):
            return pid
    return None


def _spawn(data: Path, node: int) -> subprocess.Popen:
    d = _node_dir(data, node)
    out = open(d / "broker.log", "ab")
    proc = subprocess.Popen(broker._java_cmd("kafka.Kafka", str(d / "server.properties"), heap="384m"),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    (d / "broker.pid").write_text(str(proc.pid))
    return proc


def _secured(data: Path) -> dict | None:
    """The security material of a secured cluster (None for one started with --insecure)."""
    return broker.security_setup() if json.loads((data / "mode.json").read_text())["secure"] else None


def _wait_serving(data: Path, base: int, node: int, timeout: float = 120) -> None:
    port = ports(base, node)[0]
    sec = _secured(data)
    tls = broker._tls_context(sec)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker._api_versions_ok("127.0.0.1", port, tls) and (sec or broker._metadata_ok("127.0.0.1", port)):
            return
        time.sleep(0.3)
    sys.exit(f"cluster: node {node} not serving on 127.0.0.1:{port} after {timeout:.0f}s")


def start(data: Path, base: int, partitions: int, *, secure: bool = True) -> None:
    """Start every node that is not running, wait until all three serve, then (secured) set up access as the admin."""
    broker.fetch()
    started = time.monotonic()
    data.mkdir(parents=True, exist_ok=True)
    (data / "mode.json").write_text(json.dumps({"secure": secure}))
    sec = broker.security_setup() if secure else None
    _format_all(data, base, partitions, sec)
    for node in NODES:
        if _pid(data, node) is None:
            _spawn(data, node)
    for node in NODES:
        _wait_serving(data, base, node)
    if sec:
        _apply_access(base, sec, partitions)
    mode = f"SASL_SSL, credentials in {sec['credentials']}" if sec else "PLAINTEXT"
    print(f"cluster: 3 nodes ready on {bootstrap(base)} ({mode}) in {time.monotonic() - started:.1f}s", flush=True)


def _apply_access(base: int, sec: dict, partitions: int) -> None:
    """As the admin: every principal's SCRAM credentials, every topic (replication 3), every ACL."""
    sys.path.insert(0, str(broker.ROOT / "scripts"))
    import kafka_access

    from common.kafka import LocalCredentials

    admin = LocalCredentials.load(Path(sec["credentials"])).security(broker.ADMIN)
    asyncio.run(kafka_access.apply(bootstrap(base), admin=admin, passwords=sec["principals"], model=sec["model"],
                                   partitions=partitions, replication=len(NODES)))


def kill(data: Path, node: int) -> None:
    """SIGKILL one node."""
    pid = _pid(data, node)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        _reap(pid, 10)
    (_node_dir(data, node) / "broker.pid").unlink(missing_ok=True)


def stop_node(data: Path, node: int, timeout: float = 90) -> None:
    """Controlled shutdown of one node (SIGTERM: it hands over leadership first); SIGKILL only after `timeout`."""
    pid = _pid(data, node)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if not _reap(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            _reap(pid, 10)
    (_node_dir(data, node) / "broker.pid").unlink(missing_ok=True)


def _reap(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while broker._alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return not broker._alive(pid)


def start_node(data: Path, base: int, node: int) -> None:
    """Start one node again (its storage is kept) and wait until it serves."""
    if _pid(data, node) is None:
        _spawn(data, node)
    _wait_serving(data, base, node)


def stop(data: Path) -> None:
    """Stop all nodes (controlled, all at once)."""
    for node in NODES:
        pid = _pid(data, node)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
    for node in NODES:
        stop_node(data, node)
    print("cluster: stopped")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "kill", "stop-node", "start-node"])
    parser.add_argument("node", nargs="?", type=int, choices=NODES)
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_CLUSTER_PORT", "19092")))
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("KAFKA_CLUSTER_DIR", DEFAULT_DATA)))
    parser.add_argument("--partitions", type=int, default=int(os.environ.get("KAFKA_PARTITIONS", "3")))
    parser.add_argument("--insecure", action="store_true", help="plaintext listeners, no authentication (diagnosis)")
    args = parser.parse_args()
    if args.command in ("kill", "stop-node", "start-node") and args.node is None:
        parser.error(f"{args.command} needs a node number (1, 2 or 3)")
    if args.command == "start":
        start(args.data, args.port, args.partitions, secure=not args.insecure)
    elif args.command == "stop":
        stop(args.data)
    elif args.command == "kill":
        kill(args.data, args.node)
    elif args.command == "stop-node":
        stop_node(args.data, args.node)
    elif args.command == "start-node":
        start_node(args.data, args.port, args.node)
    else:
        tls = broker._tls_context(_secured(args.data)) if (args.data / "mode.json").exists() else None
        up = [n for n in NODES if broker._api_versions_ok("127.0.0.1", ports(args.port, n)[0], tls)]
        print(f"cluster: nodes up {up or 'none'} ({bootstrap(args.port)})")
        sys.exit(0 if len(up) == len(NODES) else 1)


if __name__ == "__main__":
    main()
