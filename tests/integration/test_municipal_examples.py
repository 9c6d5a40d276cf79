"""The integration guide's examples work as a municipal developer would run them: the Python (aiokafka + cloudevents)
and Java (kafka-clients + CloudEvents SDK, built with Maven) producers post a position that matching applies, and the
consumers follow registry.certification.v1, against the real broker with the KAFKA_* connection settings."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
import yaml

import matching.main
from matching.config import Settings
from tests.support.harness import fresh_database, principal_security, produce, run_service, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "municipal"
JAVA_BUILD = ROOT / ".local" / "examples" / "java"  # cached across sessions; rebuilt when a source changes
EMPLOYER_USCC = "91310000132214209T"
CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"  # what the platform's relay sets


@pytest.fixture(scope="session")
def java_classpath() -> str:
    """Build the Java examples with Maven once (offline when the dependencies are cached) and give their classpath."""
    assert shutil.which("mvn") and shutil.which("java"), "Java 17 and Maven are needed (see README.md)"
    project = EXAMPLES / "java"
    stamp = JAVA_BUILD / ".built"
    newest = max(p.stat().st_mtime for p in [project / "pom.xml", *project.rglob("*.java")])
    if not stamp.exists() or stamp.stat().st_mtime < newest:
        shutil.rmtree(JAVA_BUILD / "lib", ignore_errors=True)  # no stale jars from an older dependency list
        base = ["mvn", "-B", "-q", "-f", str(project / "pom.xml"), f"-Dbuild.dir={JAVA_BUILD}", "package"]
        offline = subprocess.run([*base[:3], "-o", *base[3:]], capture_output=True, text=True)
        if offline.returncode != 0:
            online = subprocess.run(base, capture_output=True, text=True)
            assert online.returncode == 0, online.stdout[-3000:] + online.stderr[-3000:]
        stamp.write_text("ok\n")
    return f"{JAVA_BUILD / 'classes'}{os.pathsep}{JAVA_BUILD / 'lib'}/*"


def client_env(broker) -> dict[str, str]:
    """The environment a municipal developer sets: the broker's address and the human-resources platform's principal
    (SASL_SSL, its password and the CA), as `scripts/broker.py env human-resources` prints them."""
    security = principal_security(broker.bootstrap, "human-resources")
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, **security.as_env()}


async def run(*cmd: str, env: dict[str, str], cwd: Path, timeout: float = 90) -> str:
    """Run an example to completion (without blocking the services running in this event loop); its stdout."""
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{out.decode()[-2000:]}\n{err.decode()[-3000:]}"
    return out.decode()


async def opportunity_for(svc, external_id: str) -> dict | None:
    """Matching's opportunity for a posted position, once applied."""
    page = (await svc.http.get("/opportunities", params={"kind": "talent_demand", "limit": 200})).json()
    return next((o for o in page["items"] if o["external_id"] == external_id), None)


async def publish_certification(broker) -> tuple[str, str]:
    """A registry.certification.v1 event as the registry publishes it (the documented example, fresh ids)."""
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    example = doc["components"]["messages"]["registry.certification.certified"]["examples"][0]["payload"]
    cert_id, event_id = f"cert-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    event = {**example, "id": event_id, "subject": cert_id, "data": {**example["data"], "id": cert_id}}
    await produce(broker.bootstrap, "registry.certification.v1", [orjson.dumps(event)], key=cert_id.encode(),
                  headers=[("content-type", CONTENT_TYPE)])
    return cert_id, event_id


def applied_lines(output: str) -> list[dict]:
    """The JSON lines a consumer example printed."""
    return [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]


async def test_the_python_examples_post_a_position_and_follow_certifications(broker):
    env, cwd = client_env(broker), EXAMPLES / "python"
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        ext = f"py-example-{uuid.uuid4().hex[:8]}"
        out = await run(sys.executable, "producer.py", "--external-id", ext, "--employer-uscc", EMPLOYER_USCC,
                        env=env, cwd=cwd)
        event_id = out.strip().splitlines()[-1]
        opp = await wait_until(lambda: opportunity_for(svc, ext), timeout=30, what="the position from producer.py")
        assert opp["status"] == "open" and opp["capacity"] == 8 and opp["industries"] == ["integrated_circuits"]
        # the same event id again (a retry) changes nothing
        await run(sys.executable, "producer.py", "--external-id", ext, "--employer-uscc", EMPLOYER_USCC,
                  "--event-id", event_id, "--headcount", "99", env=env, cwd=cwd)
        consumer = next(c for c in svc.consumers if "municipal.talent-demand.v1" in c.subscriptions)
        await consumer.wait_idle(20)
        assert (await opportunity_for(svc, ext))["capacity"] == 8

    cert_id, cert_event = await publish_certification(broker)
    out = await run(sys.executable, "consumer.py", "--group", f"human-resources.example-{uuid.uuid4().hex[:6]}",
                    "--idle-exit", "4", env=env, cwd=cwd)
    mine = [line for line in applied_lines(out) if line.get("subject") == cert_id]
    assert mine == [{"type": "cn.gov.sh.cjrh.registry.certification.certified", "id": cert_event,
                     "subject": cert_id, "status": "certified", "version": 1}]


async def test_the_java_examples_post_a_position_and_follow_certifications(broker, java_classpath):
    env, cwd = client_env(broker), ROOT
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        ext = f"java-example-{uuid.uuid4().hex[:8]}"
        out = await run("java", "-cp", java_classpath, "cn.gov.sh.cjrh.examples.TalentDemandProducer", ext,
                        EMPLOYER_USCC, env=env, cwd=cwd)
        assert out.strip(), "the producer prints the event id"
        opp = await wait_until(lambda: opportunity_for(svc, ext), timeout=30, what="the position from Java")
        assert opp["status"] == "open" and opp["employer_name"] == "上海临港经济发展（集团）有限公司"

    cert_id, cert_event = await publish_certification(broker)
    out = await run("java", "-cp", java_classpath, "cn.gov.sh.cjrh.examples.CertificationConsumer",
                    f"human-resources.example-{uuid.uuid4().hex[:6]}", "4", env=env, cwd=cwd)
    mine = [line for line in applied_lines(out) if line.get("subject") == cert_id]
    assert mine == [{"type": "cn.gov.sh.cjrh.registry.certification.certified", "id": cert_event,
                     "subject": cert_id, "status": "certified", "version": 1}]
