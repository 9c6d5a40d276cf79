#!/usr/bin/env python3
"""Run a real single-node Apache Kafka broker (KRaft, combined mode) from Maven Central's jars.

    python scripts/broker.py fetch                 # resolve the jars once into .local/kafka/libs (cached)
    python scripts/broker.py start [--port 9092]   # format storage if needed, start, wait until it serves metadata
    python scripts/broker.py stop                  # stop it cleanly (SIGTERM, then wait)
    python scripts/broker.py status
    python scripts/broker.py env PRINCIPAL         # the KAFKA_* variables a client connects with, as PRINCIPAL

Secured by default, like every broker the platform ships: one SASL_SSL listener (SCRAM-SHA-512 over TLS) for clients
and the broker itself, a loopback SASL_PLAINTEXT controller listener (PLAIN, its own principal only), StandardAuthorizer
with `allow.everyone.if.no.acl.found=false`. A development CA, the broker's certificate (127.0.0.1, localhost) and a
password per principal are generated once under `.local/kafka/security/` (KAFKA_SECURITY_DIR), never committed;
`credentials.json` there says how each principal connects. After start, the admin principal creates every topic,
every principal's SCRAM credentials and the ACLs scripts/kafka_access.py derives from the services' code and
deploy/kafka/platforms.yaml. `--insecure` starts a plaintext broker without authentication, for diagnosis only.

`fetch` needs only the standard library (it runs before any virtualenv exists); securing the broker needs the
virtualenv's `cryptography` and `aiokafka` (`make broker` and `make run` use it). `start` detaches the broker and writes
its pid under the data folder; `run` keeps it in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.properties"
LIBS = Path(os.environ.get("KAFKA_LIBS_DIR", ROOT / ".local" / "kafka" / "libs"))
DEFAULT_DATA = ROOT / ".local" / "kafka" / "data"
SECURITY_DIR = Path(os.environ.get("KAFKA_SECURITY_DIR", ROOT / ".local" / "kafka" / "security"))


def kafka_version() -> str:
    """The Kafka version the broker runs, as pinned in deploy/kafka/pom.xml."""
    return re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text()).group(1)


def fetch() -> Path:
    """Resolve the broker jars into LIBS unless a previous run already did (the marker file says so)."""
    marker = LIBS / ".complete"
    if marker.exists():
        version = kafka_version()
        if not (LIBS / f"kafka_2.13-{version}.jar").exists():
            # A folder fetched for another version would start a broker the pom no longer names; it may be shared
            # with other checkouts, so it is never emptied here.
            found = sorted(p.name for p in LIBS.glob("kafka_2.13-*.jar"))
            sys.exit(f"broker: {LIBS} holds {found or 'no kafka_2.13 jar'}, but deploy/kafka/pom.xml pins Kafka "
                     f"{version}: point KAFKA_LIBS_DIR at another folder (or remove this one) to fetch {version}")
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


def _listener_properties(port: int, controller_port: int, sec: dict | None) -> list[str]:
    if sec is None:
        return [
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    internal = sec["internal"]
    scram = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
             f'username="{BROKER}" password="{internal[BROKER]}";')
    # SCRAM credentials live in the metadata log, which the controller cannot read before its quorum is up: the
    # controller listener authenticates its one client (this broker) with PLAIN against a static user instead. It
    # listens on the loopback interface only and skips TLS: with TLS there too, the broker served 6 s later (22 s
    # instead of 16 s on the shared 2-core machine; the JVM's TLS is slow with the C1-only JIT used here).
    plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
             f'username="{CONTROLLER}" password="{internal[CONTROLLER]}" user_{CONTROLLER}="{internal[CONTROLLER]}";')
    return [
        f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
        "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain}",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={sec['keystore']}",
        f"ssl.keystore.password={internal['keystore']}",
        f"ssl.key.password={internal['keystore']}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={sec['cafile']}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN};User:{BROKER};User:{CONTROLLER}",
    ]


def _properties(data: Path, port: int, controller_port: int, partitions: int, sec: dict | None = None) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        *_listener_properties(port, controller_port, sec),
        "controller.listener.names=CONTROLLER",
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


def _format(data: Path, props: Path, sec: dict | None) -> None:
    # A data folder formatted for another security setup (plaintext, or other bootstrap credentials) cannot serve
    # this one: the admin's and the broker's SCRAM credentials are written into the metadata log at format time.
    marker = data / "security.marker"
    wanted = sec["fingerprint"] if sec else "insecure"
    if (data / "logs" / "meta.properties").exists():
        if marker.exists() and marker.read_text() == wanted:
            return
        # Nothing is deleted: the old data is moved aside, and one line says where.
        aside = data / f"logs.other-security-{time.strftime('%Y%m%d-%H%M%S')}"
        (data / "logs").rename(aside)
        print(f"broker: {data / 'logs'} was formatted for another security setup (other credentials, or plaintext); "
              f"moved it to {aside} and formatting afresh (delete that folder once you no longer need its topics)",
              flush=True)
    # The storage tool runs in a second or two with a C1-only JIT; one JVM gives both the cluster id and the format.
    cluster_id = "-"
    while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: an id must not read like an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    scram = []
    if sec:
        internal = sec["internal"]
        for name, password in ((ADMIN, sec["principals"][ADMIN]), (BROKER, internal[BROKER])):
            scram += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
    subprocess.run(
        _java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--ignore-formatted",
                  *scram, heap="128m"),
        check=True, capture_output=True, text=True,
    )
    marker.write_text(wanted)


def _connect(host: str, port: int, tls: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=2)
    return tls.wrap_socket(sock, server_hostname=host) if tls else sock


def _api_versions_ok(host: str, port: int, tls: ssl.SSLContext | None = None) -> bool:
    """Send an ApiVersions v0 request (answered before authentication) and check the broker answers with error 0."""
    client = b"broker-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    try:
        with _connect(host, port, tls) as sock:
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
    """Ask for cluster metadata (Metadata v4, all topics) and check a broker is listed (plaintext brokers only)."""
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


def _tls_context(sec: dict | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=sec["cafile"]) if sec else None


def wait_ready(port: int, timeout: float = 90.0, proc: subprocess.Popen | None = None,
               sec: dict | None = None) -> None:
    """Block until the broker answers (ApiVersions, and Metadata when plaintext), or fail after `timeout` seconds.

    A secured broker is ready once `_apply_access` could log in as the admin and set up topics and ACLs."""
    deadline = time.monotonic() + timeout
    tls = _tls_context(sec)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"broker: the broker exited early with code {proc.returncode}")
        if _api_versions_ok("127.0.0.1", port, tls) and (sec is not None or _metadata_ok("127.0.0.1", port)):
            return
        time.sleep(0.3)
    sys.exit(f"broker: not ready on 127.0.0.1:{port} after {timeout:.0f}s")


# --- security: a development CA, the broker's certificate, a password per principal ----------------------------

ADMIN = "kafka-admin"
BROKER = "kafka-broker"
CONTROLLER = "kafka-controller"


def _new_password() -> str:
    return secrets.token_urlsafe(24)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(path)


def certificates(folder: Path, keystore_password: str, *, names: tuple[str, ...] = ("localhost",),
                 ips: tuple[str, ...] = ("127.0.0.1",)) -> None:
    """A development CA (ca.pem) and the broker's certificate for `names` and `ips` in a PKCS12 keystore
    (broker.p12), valid for ten years."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    life = datetime.timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cjrh development Kafka CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + life)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + life)
            .add_extension(x509.SubjectAlternativeName([*(x509.DNSName(n) for n in names),
                                                        *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(folder / "ca-key.pem", ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    _write_private(folder / "broker.p12", pkcs12.serialize_key_and_certificates(
        b"broker", key, cert, [ca], serialization.BestAvailableEncryption(keystore_password.encode())))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def leaf_certificate(folder: Path, name: str, *, client: bool = False, days: int = 825) -> tuple[bytes, bytes]:
    """A certificate for `name` signed by the development CA in `folder` (ca.pem, ca-key.pem): for a server (a DNS
    name, e.g. the dev cluster's Ingress host) or, with `client`, for mutual TLS. Returns (certificate, key) in PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if not client:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def security_setup(folder: Path = SECURITY_DIR) -> dict:
    """Create (once) the CA, the broker's keystore and a password for every principal; return what the broker needs.

    New principals (a platform added to deploy/kafka/platforms.yaml) get a password; existing ones keep theirs."""
    import fcntl

    sys.path.insert(0, str(ROOT / "scripts"))
    import kafka_access

    model = kafka_access.load_generated()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test sessions started at once share the folder
        internal_path, creds_path = folder / "internal.json", folder / "credentials.json"
        internal = json.loads(internal_path.read_text()) if internal_path.exists() else {}
        if not internal:
            internal = {BROKER: _new_password(), CONTROLLER: _new_password(), "keystore": _new_password()}
            certificates(folder, internal["keystore"])
            _write_private(internal_path, json.dumps(internal, indent=2).encode())
        creds = json.loads(creds_path.read_text()) if creds_path.exists() else {
            "protocol": "SASL_SSL", "mechanism": "SCRAM-SHA-512", "cafile": str(folder / "ca.pem"), "principals": {}}
        principals = creds["principals"]
        before = dict(principals)
        for name in [ADMIN, *model.principals]:
            principals.setdefault(name, _new_password())
        if principals != before or not creds_path.exists():
            _write_private(creds_path, json.dumps(creds, indent=2).encode())
    import hashlib

    fingerprint = hashlib.sha256(f"{principals[ADMIN]} {internal[BROKER]}".encode()).hexdigest()[:16]
    return {"principals": principals, "internal": internal, "cafile": str(folder / "ca.pem"),
            "keystore": str(folder / "broker.p12"), "fingerprint": fingerprint, "model": model,
            "credentials": str(creds_path)}


def _apply_access(port: int, sec: dict, partitions: int, proc: subprocess.Popen | None) -> None:
    """As the admin: every principal's SCRAM credentials, every topic, every ACL (idempotent)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import kafka_access

    from common.kafka import LocalCredentials

    admin = LocalCredentials.load(Path(sec["credentials"])).security(ADMIN)
    try:
        asyncio.run(kafka_access.apply(f"127.0.0.1:{port}", admin=admin, passwords=sec["principals"],
                                       model=sec["model"], partitions=partitions))
    except Exception as exc:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"broker: the broker exited early with code {proc.returncode}")
        sys.exit(f"broker: setting up credentials, topics and ACLs failed: {exc!r}")


def _spawn(data: Path, port: int, partitions: int, log_file: Path | None, sec: dict | None) -> subprocess.Popen:
    fetch()
    data.mkdir(parents=True, exist_ok=True)
    props = data / "server.properties"
    props.write_text(_properties(data, port, port + 1, partitions, sec))
    props.chmod(0o600)  # it holds the broker's passwords
    _format(data, props, sec)
    out = open(log_file, "ab") if log_file else None
    return subprocess.Popen(
        _java_cmd("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT if out else None,
        start_new_session=log_file is not None,
    )


def start(data: Path, port: int, partitions: int, *, secure: bool = True) -> None:
    """Start a detached broker (pid in DATA/broker.pid, log in DATA/broker.log) and wait until it is ready."""
    started = time.monotonic()
    sec = security_setup() if secure else None
    pidfile = data / "broker.pid"
    if pidfile.exists() and _alive(int(pidfile.read_text())) and _api_versions_ok("127.0.0.1", port,
                                                                                  _tls_context(sec)):
        if sec:
            _apply_access(port, sec, partitions, None)  # e.g. a platform added since it started
        print(f"broker: already running on 127.0.0.1:{port}")
        return
    proc = _spawn(data, port, partitions, data / "broker.log", sec)
    pidfile.write_text(str(proc.pid))
    wait_ready(port, proc=proc, sec=sec)
    serving = time.monotonic() - started
    if sec:
        _apply_access(port, sec, partitions, proc)
    mode = (f"SASL_SSL, credentials in {sec['credentials']}; serving after {serving:.1f}s, then topics, credentials "
            f"and ACLs" if sec else "PLAINTEXT, no authentication")
    print(f"broker: ready on 127.0.0.1:{port} ({mode}) in {time.monotonic() - started:.1f}s (pid {proc.pid})",
          flush=True)


def run(data: Path, port: int, partitions: int, *, secure: bool = True) -> None:
    """Run the broker in the foreground until interrupted."""
    sec = security_setup() if secure else None
    proc = _spawn(data, port, partitions, None, sec)
    (data / "broker.pid").write_text(str(proc.pid))
    try:
        wait_ready(port, proc=proc, sec=sec)
        if sec:
            _apply_access(port, sec, partitions, proc)
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
    parser.add_argument("command", choices=["fetch", "start", "run", "stop", "status", "env"])
    parser.add_argument("principal", nargs="?", help="for `env`: whose credentials (a service, a platform, "
                                                      f"{ADMIN})")
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("KAFKA_DATA_DIR", DEFAULT_DATA)))
    parser.add_argument("--partitions", type=int, default=int(os.environ.get("KAFKA_PARTITIONS", "3")))
    parser.add_argument("--insecure", action="store_true",
                        help="plaintext, no authentication, no ACLs: for diagnosis only")
    args = parser.parse_args()
    if args.command == "fetch":
        fetch()
    elif args.command == "start":
        start(args.data, args.port, args.partitions, secure=not args.insecure)
    elif args.command == "run":
        run(args.data, args.port, args.partitions, secure=not args.insecure)
    elif args.command == "stop":
        stop(args.data)
    elif args.command == "env":
        creds = json.loads((SECURITY_DIR / "credentials.json").read_text())
        print(f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{args.port}")
        print(f"KAFKA_SECURITY_PROTOCOL={creds['protocol']}\nKAFKA_SASL_MECHANISM={creds['mechanism']}")
        print(f"KAFKA_SASL_USERNAME={args.principal}\nKAFKA_SASL_PASSWORD={creds['principals'][args.principal]}")
        print(f"KAFKA_SSL_CAFILE={creds['cafile']}")
    else:
        cafile = SECURITY_DIR / "ca.pem"
        tls = None if args.insecure or not cafile.exists() else ssl.create_default_context(cafile=str(cafile))
        ok = _api_versions_ok("127.0.0.1", args.port, tls)
        print(f"broker: {'up' if ok else 'down'} on 127.0.0.1:{args.port}")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
