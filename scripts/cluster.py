#!/usr/bin/env python3
"""A production-shaped Kafka cluster on one machine: three KRaft nodes (each a controller and a broker) on loopback.

    python scripts/cluster.py start [--data DIR] [--port 19092]   # format once, start all three, wait for the quorum
    python scripts/cluster.py stop | status
    python scripts/cluster.py kill N        # SIGKILL node N (1..3), as a crash would
    python scripts/cluster.py stop-node N   # controlled shutdown of node N (leadership moves first)
    python scripts/cluster.py start-node N  # start node N again and wait until it serves

Node N's client listener is PORT + 2(N-1), its controller listener the port after it. Topics default to replication 3
with min.insync.replicas 2 and unclean leader election off, as in production (docs/scaling.md): one node down never
stops an acks=all producer, two down do. The jars, JVM flags and readiness probes are the development broker's
(scripts/broker.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
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


def _properties(data: Path, base: int, node: int, partitions: int) -> str:
    port, controller = ports(base, node)
    voters = ",".join(f"{n}@127.0.0.1:{ports(base, n)[1]}" for n in NODES)
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
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
        "message.max.bytes=2097152",
        "",
    ])


def _node_dir(data: Path, node: int) -> Path:
    return data / f"node-{node}"


def _format_all(data: Path, base: int, partitions: int) -> None:
    """Write each node's properties and format its storage with one shared cluster id (once)."""
    id_file = data / "cluster.id"
    if not id_file.exists():
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = subprocess.run(broker._java_cmd("kafka.tools.StorageTool", "random-uuid", heap="128m"),
                                    check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        id_file.write_text(cluster_id)
    cluster_id = id_file.read_text().strip()
    for node in NODES:
        d = _node_dir(data, node)
        d.mkdir(parents=True, exist_ok=True)
        props = d / "server.properties"
        props.write_text(_properties(data, base, node, partitions))
        if not (d / "logs" / "meta.properties").exists():
            subprocess.run(broker._java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                                            "--ignore-formatted", heap="128m"),
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


def _wait_serving(base: int, node: int, timeout: float = 120) -> None:
    port = ports(base, node)[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker._api_versions_ok("127.0.0.1", port) and broker._metadata_ok("127.0.0.1", port):
            return
        time.sleep(0.3)
    sys.exit(f"cluster: node {node} not serving on 127.0.0.1:{port} after {timeout:.0f}s")


def start(data: Path, base: int, partitions: int) -> None:
    """Start every node that is not running, then wait until all three serve."""
    broker.fetch()
    started = time.monotonic()
    _format_all(data, base, partitions)
    for node in NODES:
        if _pid(data, node) is None:
            _spawn(data, node)
    for node in NODES:
        _wait_serving(base, node)
    print(f"cluster: 3 nodes ready on {bootstrap(base)} in {time.monotonic() - started:.1f}s", flush=True)


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
    _wait_serving(base, node)


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
    args = parser.parse_args()
    if args.command in ("kill", "stop-node", "start-node") and args.node is None:
        parser.error(f"{args.command} needs a node number (1, 2 or 3)")
    if args.command == "start":
        start(args.data, args.port, args.partitions)
    elif args.command == "stop":
        stop(args.data)
    elif args.command == "kill":
        kill(args.data, args.node)
    elif args.command == "stop-node":
        stop_node(args.data, args.node)
    elif args.command == "start-node":
        start_node(args.data, args.port, args.node)
    else:
        up = [n for n in NODES if broker._api_versions_ok("127.0.0.1", ports(args.port, n)[0])]
        print(f"cluster: nodes up {up or 'none'} ({bootstrap(args.port)})")
        sys.exit(0 if len(up) == len(NODES) else 1)


if __name__ == "__main__":
    main()
