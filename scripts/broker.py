#!/usr/bin/env python3
"""Run a real single-node Apache Kafka broker (KRaft, combined mode) from Maven Central's jars.

    python scripts/broker.py fetch                 # resolve the jars once into .local/kafka/libs (cached)
    python scripts/broker.py start [--port 9092]   # format storage if needed, start, wait until it serves metadata
    python scripts/broker.py stop                  # stop it cleanly (SIGTERM, then wait)
    python scripts/broker.py status

Standard library only, so it runs before any virtualenv exists. `start` detaches the broker and writes its pid under
the data folder; `run` keeps it in the foreground (used by `make run`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.properties"
LIBS = Path(os.environ.get("KAFKA_LIBS_DIR", ROOT / ".local" / "kafka" / "libs"))
DEFAULT_DATA = ROOT / ".local" / "kafka" / "data"


def fetch() -> Path:
    """Resolve the broker jars into LIBS unless a previous run already did (the marker file says so)."""
    marker = LIBS / ".complete"
    if marker.exists():
        return LIBS
    if not shutil.which("mvn"):
        sys.exit("broker: Maven (mvn) is needed to fetch Apache Kafka's jars from Maven Central")
    print(f"broker: fetching Apache Kafka jars from Maven Central into {LIBS} (first run only) ...", flush=True)
    LIBS.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn", "-B", "--no-transfer-progress", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={LIBS}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    copied = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Copying" in line or "Downloaded" in line:
            copied += 1
            if copied % 5 == 0:
                print(f"broker:   {copied} artifacts so far ...", flush=True)
        if "ERROR" in line:
            print(line.rstrip(), flush=True)
    if proc.wait() != 0:
        sys.exit("broker: Maven could not resolve the Kafka jars (see the errors above)")
    marker.write_text("ok\n")
    print(f"broker: {len(list(LIBS.glob('*.jar')))} jars ready", flush=True)
    return LIBS


# A development broker shares a small machine with the services, PostgreSQL and the tests. Measured on 2 cores at 200
# messages/s: the C1 compiler alone halves the broker's CPU (38-75% of a core -> 22-38%, most of it the C2 compiler
# still at work minutes after start) with lower produce -> consume latency, and a 20 ms pause goal keeps G1's young
# collections near 10 ms instead of 40-50 ms, each of which stalled every message in flight. KAFKA_JVM_EXTRA adds
# flags (e.g. -Xlog:gc:file=/tmp/broker-gc.log).
JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:TieredStopAtLevel=1")


def _java_cmd(main: str, *args: str, heap: str = "512m") -> list[str]:
    return [
        "java", f"-Xms{heap}", f"-Xmx{heap}", *JVM_FLAGS, *os.environ.get("KAFKA_JVM_EXTRA", "").split(),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J}", "-cp", f"{LIBS}/*", main, *args,
    ]


def _record_limit() -> int:
    """MAX_RECORD_BYTES of libs/common/common/limits.py (standard library only, so importable without a virtualenv)."""
    sys.path.insert(0, str(ROOT / "libs" / "common"))
    from common.limits import MAX_RECORD_BYTES

    return MAX_RECORD_BYTES


def _properties(data: Path, port: int, controller_port: int, partitions: int) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data / 'logs'}",
        f"num.partitions={partitions}",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "log.flush.interval.ms=1000",
        f"message.max.bytes={_record_limit()}",  # the one record limit of libs/common/common/limits.py
        "",
    ])


def _format(data: Path, props: Path) -> None:
    if (data / "logs" / "meta.properties").exists():
        return
    cluster_id = subprocess.run(
        _java_cmd("kafka.tools.StorageTool", "random-uuid", heap="128m"),
        check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    subprocess.run(
        _java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--ignore-formatted",
                  heap="128m"),
        check=True, capture_output=True, text=True,
    )


def _api_versions_ok(host: str, port: int) -> bool:
    """Send an ApiVersions v0 request and check the broker answers with error code 0."""
    client = b"broker-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = sock.recv(4)
            if len(header) < 4:
                return False
            (size,) = struct.unpack(">i", header)
            payload = b""
            while len(payload) < size:
                chunk = sock.recv(size - len(payload))
                if not chunk:
                    return False
                payload += chunk
            _corr, error = struct.unpack(">ih", payload[:6])
            return error == 0
    except OSError:
        return False


def _metadata_ok(host: str, port: int) -> bool:
    """Ask for cluster metadata (Metadata v4, all topics) and check a broker is listed."""
    client = b"broker-probe"
    body = struct.pack(">hhih", 3, 4, 2, len(client)) + client + struct.pack(">i", -1) + b"\x00"
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = sock.recv(4)
            if len(header) < 4:
                return False
            (size,) = struct.unpack(">i", header)
            payload = b""
            while len(payload) < size:
                chunk = sock.recv(size - len(payload))
                if not chunk:
                    return False
                payload += chunk
            # correlation id (4), throttle (4), broker array length (4)
            (brokers,) = struct.unpack(">i", payload[8:12])
            return brokers >= 1
    except (OSError, struct.error):
        return False


def wait_ready(port: int, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    """Block until the broker answers ApiVersions and Metadata requests, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"broker: the broker exited early with code {proc.returncode}")
        if _api_versions_ok("127.0.0.1", port) and _metadata_ok("127.0.0.1", port):
            return
        time.sleep(0.3)
    sys.exit(f"broker: not ready on 127.0.0.1:{port} after {timeout:.0f}s")


def _spawn(data: Path, port: int, partitions: int, log_file: Path | None) -> subprocess.Popen:
    fetch()
    data.mkdir(parents=True, exist_ok=True)
    props = data / "server.properties"
    props.write_text(_properties(data, port, port + 1, partitions))
    _format(data, props)
    out = open(log_file, "ab") if log_file else None
    return subprocess.Popen(
        _java_cmd("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT if out else None,
        start_new_session=log_file is not None,
    )


def start(data: Path, port: int, partitions: int) -> None:
    """Start a detached broker (pid in DATA/broker.pid, log in DATA/broker.log) and wait until it is ready."""
    pidfile = data / "broker.pid"
    if pidfile.exists() and _alive(int(pidfile.read_text())) and _api_versions_ok("127.0.0.1", port):
        print(f"broker: already running on 127.0.0.1:{port}")
        return
    started = time.monotonic()
    proc = _spawn(data, port, partitions, data / "broker.log")
    pidfile.write_text(str(proc.pid))
    wait_ready(port, proc=proc)
    print(f"broker: ready on 127.0.0.1:{port} in {time.monotonic() - started:.1f}s (pid {proc.pid})", flush=True)


def run(data: Path, port: int, partitions: int) -> None:
    """Run the broker in the foreground until interrupted."""
    proc = _spawn(data, port, partitions, None)
    (data / "broker.pid").write_text(str(proc.pid))
    try:
        wait_ready(port, proc=proc)
        print(f"broker: ready on 127.0.0.1:{port}", flush=True)
        proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop(data: Path, timeout: float = 60.0) -> None:
    """Stop the broker started with `start`: SIGTERM for a controlled shutdown, SIGKILL only after `timeout`."""
    pidfile = data / "broker.pid"
    if not pidfile.exists():
        print("broker: not running")
        return
    pid = int(pidfile.read_text())
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    print("broker: stopped")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "start", "run", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("KAFKA_DATA_DIR", DEFAULT_DATA)))
    parser.add_argument("--partitions", type=int, default=int(os.environ.get("KAFKA_PARTITIONS", "3")))
    args = parser.parse_args()
    if args.command == "fetch":
        fetch()
    elif args.command == "start":
        start(args.data, args.port, args.partitions)
    elif args.command == "run":
        run(args.data, args.port, args.partitions)
    elif args.command == "stop":
        stop(args.data)
    else:
        ok = _api_versions_ok("127.0.0.1", args.port)
        print(f"broker: {'up' if ok else 'down'} on 127.0.0.1:{args.port}")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
