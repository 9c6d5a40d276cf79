"""The mixed workload: portal reads, registrations, postings, registry writes and municipal records, open loop."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from common.outbox import producer_is_broken
from load.seed import DISTRICTS, INDUSTRIES, KEYWORDS, OFFICE, Seeded, uscc
from tests.support.harness import auth, principal_security
from tests.support.loadgen import LoadClient
from tests.support.poison import enterprise_record

MUNICIPAL_TOPIC = "municipal.enterprise.v1"
# endpoint -> (class on the plot, share of the total rate in percent, the Workload method that sends it)
MIX: dict[str, tuple[str, int, str]] = {
    "registry GET /institutions?q=": ("portal reads", 20, "search_institutions"),
    "events GET /activities": ("portal reads", 14, "list_activities"),
    "registry GET /certified-enterprises": ("portal reads", 10, "certified_enterprises"),
    "matching GET /opportunities/{id}/recommendations": ("portal reads", 10, "recommendations"),
    "events POST /activities/{id}/registrations": ("registrations", 16, "register"),
    "matching POST /opportunities": ("postings", 8, "post_opportunity"),
    "registry PATCH /institutions/{id}": ("registry writes", 10, "update_institution"),
    "registry POST /certifications/{id}/steps": ("registry writes", 4, "certification_step"),
    "kafka produce municipal.enterprise.v1": ("municipal inbound", 8, "municipal_record"),
}
CERT_STEPS = ("apply", "approve", "certify", "announce", "evaluate_pass")  # evaluate_pass repeats on an announced file
CERT_STEP_AFTER = {"pooled": 0, "rejected": 0, "applied": 1, "reviewed": 2, "certified": 3, "announced": 4}
REQUEST_TIMEOUT = 10.0
MAX_IN_FLIGHT = 200  # with the timeout, bounds what a stalled service piles up here (and this process's own CPU)


@dataclass(slots=True)
class Sample:
    """One request: when it was sent (seconds from the start), to what, how long it took and how it ended."""

    t: float
    endpoint: str
    seconds: float
    outcome: str
    ok: bool


@dataclass
class Workload:
    """Fires the mix at a fixed total rate and records every answer plus what end-to-end latency needs."""

    urls: dict[str, str]
    seeded: Seeded
    bootstrap: str
    rng: random.Random
    samples: list[Sample] = field(default_factory=list)
    # for end-to-end latency: aggregate, wall time the request was sent, wall time its answer was seen, t
    patched: list[tuple[tuple[str, int], float, float, float]] = field(default_factory=list)  # (id, version)
    registered: list[tuple[str, float, float, float]] = field(default_factory=list)  # registration id
    municipal: list[tuple[str, float, float, float]] = field(default_factory=list)  # event id
    late: list[tuple[float, float]] = field(default_factory=list)  # t, seconds a send left after its moment
    t0: float = 0.0
    run_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    async def run(self, rate: float, seconds: float) -> None:
        """Send int(rate * seconds) operations at evenly spaced moments; a slow answer never delays the next send."""
        names = list(MIX)
        weights = [MIX[n][1] for n in names]
        ops = {n: getattr(self, MIX[n][2]) for n in names}
        self.producer = await self._new_producer()
        self._renewing = asyncio.Lock()
        in_flight: set[asyncio.Task] = set()
        try:
            # aiohttp with few connections: this process shares the CPUs it measures (see tests/support/loadgen.py)
            async with LoadClient(timeout=REQUEST_TIMEOUT) as http:
                self.http = http
                start = time.perf_counter()
                self.t0 = start
                for i in range(int(rate * seconds)):
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    self.late.append((i / rate, max(0.0, -(start + i / rate - time.perf_counter()))))
                    name = self.rng.choices(names, weights)[0]
                    if len(in_flight) >= MAX_IN_FLIGHT:
                        self.samples.append(Sample(self._now(), name, 0.0, "dropped:too many in flight", False))
                        continue
                    task = asyncio.create_task(self._timed(name, ops[name], i))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if in_flight:
                    await asyncio.wait(in_flight, timeout=REQUEST_TIMEOUT + 5)
        finally:
            await self.producer.stop()

    async def _new_producer(self) -> AIOKafkaProducer:
        # As the city's market-supervision platform: its principal may write municipal.enterprise.v1 and nothing else.
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all",
                                    request_timeout_ms=int(REQUEST_TIMEOUT * 1000),
                                    **principal_security(self.bootstrap, "market-supervision").client_kwargs())
        await producer.start()
        return producer

    async def _renew_producer(self, broken: AIOKafkaProducer) -> None:
        """Replace a producer out of step with a restarted broker, as the services do (common.outbox)."""
        async with self._renewing:
            if self.producer is broken:
                self.producer = await self._new_producer()
                await asyncio.gather(broken.stop(), return_exceptions=True)

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    async def _timed(self, name: str, op, i: int) -> None:
        t = self._now()
        started = time.perf_counter()
        try:
            outcome, ok = await asyncio.wait_for(op(i), REQUEST_TIMEOUT)
        except TimeoutError:
            outcome, ok = "timeout", False
        except aiohttp.ClientError as exc:
            outcome, ok = f"connection:{exc.__class__.__name__}", False
        except Exception as exc:  # a Kafka error, or a bug here: counted, never fatal to the run
            outcome, ok = f"error:{exc.__class__.__name__}", False
        if outcome is None:  # nothing free to act on: not a request
            return
        self.samples.append(Sample(t, name, time.perf_counter() - started, outcome, ok))

    # -- portal reads ------------------------------------------------------------------------------------------

    async def search_institutions(self, i: int):
        """Institution search by a name substring, sometimes within a district."""
        q = self.rng.choice(("压测企业", "大学", f"11-00{self.rng.randrange(10)}", f"-01{self.rng.randrange(10)}"))
        params = {"q": q, "limit": 20}
        if self.rng.random() < 0.3:
            params["district"] = self.rng.choice(DISTRICTS)
        r = await self.http.get(f"{self.urls['registry']}/institutions", params=params)
        return str(r.status_code), r.status_code == 200

    async def list_activities(self, i: int):
        """The activity calendar as the portal shows it."""
        r = await self.http.get(f"{self.urls['events']}/activities", params={"status": "registration_open"})
        return str(r.status_code), r.status_code == 200

    async def certified_enterprises(self, i: int):
        """The public list of certified enterprises."""
        r = await self.http.get(f"{self.urls['registry']}/certified-enterprises")
        return str(r.status_code), r.status_code == 200

    async def recommendations(self, i: int):
        """Recommendations for one opportunity."""
        opp = self.rng.choice(self.seeded.opportunities)
        r = await self.http.get(f"{self.urls['matching']}/opportunities/{opp}/recommendations", params={"limit": 10})
        return str(r.status_code), r.status_code == 200

    # -- writes --------------------------------------------------------------------------------------------------

    async def register(self, i: int):
        """A new member registers for an activity; notify should put a message in their inbox."""
        sub = f"load-{self.run_tag}-{i}"
        act = self.rng.choice(self.seeded.activities)
        sent = time.time()
        r = await self.http.post(f"{self.urls['events']}/activities/{act}/registrations",
                                 headers=auth("member", sub=sub),
                                 json={"display_name": f"学员{i}", "contact_email": f"{sub}@example.edu.cn"})
        if r.status_code == 201:
            self.registered.append((r.json()["id"], sent, time.time(), self._now()))
        return str(r.status_code), r.status_code == 201

    async def post_opportunity(self, i: int):
        """An enterprise posts an open opportunity."""
        r = await self.http.post(f"{self.urls['matching']}/opportunities", headers=OFFICE, json={
            "kind": self.rng.choice(("talent_demand", "joint_rd", "apprenticeship", "technical_service")),
            "title_zh": f"压测岗位{i}：{self.rng.choice(KEYWORDS)}", "skills": self.rng.sample(KEYWORDS, 2),
            "industries": self.rng.sample(INDUSTRIES, 2), "district": self.rng.choice(DISTRICTS), "capacity": 3,
            "institution_id": self.rng.choice(self.seeded.enterprises), "open": True,
        })
        return str(r.status_code), r.status_code == 201

    async def update_institution(self, i: int):
        """The office edits an institution (If-Match with the version it last saw)."""
        if not self.seeded.updatable:
            return None, False
        inst, version = self.seeded.updatable.popleft()
        reg = self.urls["registry"]
        try:
            if version is None:
                version = (await self.http.get(f"{reg}/institutions/{inst}")).json()["version"]
            sent = time.time()
            r = await self.http.patch(f"{reg}/institutions/{inst}", headers={**OFFICE, "If-Match": f'"{version}"'},
                                      json={"keywords": self.rng.sample(KEYWORDS, 3), "name_en": f"Load {i}"})
            if r.status_code == 200:
                version = r.json()["version"]
                self.patched.append(((inst, version), sent, time.time(), self._now()))
            else:
                version = None
            return str(r.status_code), r.status_code == 200
        except Exception:
            version = None
            raise
        finally:
            self.seeded.updatable.append((inst, version))

    async def certification_step(self, i: int):
        """The office takes the next certification step of a file (apply, approve, certify, announce, evaluate)."""
        if not self.seeded.cert_steps:
            return None, False
        cert, step = self.seeded.cert_steps.popleft()
        reg = self.urls["registry"]
        try:
            action = CERT_STEPS[min(step, len(CERT_STEPS) - 1)]
            body = {"action": action, "batch_id": self.seeded.batch_id if action == "apply" else None}
            r = await self.http.post(f"{reg}/certifications/{cert}/steps", headers=OFFICE, json=body)
            if r.status_code == 200:
                step += 1
            else:  # learn where the file really is (a lost answer may have moved it on)
                now = await self.http.get(f"{reg}/certifications/{cert}", headers=OFFICE)
                if now.status_code == 200:
                    step = CERT_STEP_AFTER.get(now.json()["status"], step)
            return str(r.status_code), r.status_code == 200
        finally:
            self.seeded.cert_steps.append((cert, step))

    async def municipal_record(self, i: int):
        """The city's market-supervision platform publishes an enterprise record."""
        raw = enterprise_record(uscc(20, i), f"市场监管推送企业{self.run_tag}-{i}")
        event_id = orjson.loads(raw)["id"]
        sent = time.time()
        t = self._now()
        key = uscc(20, i).encode()
        producer = self.producer
        try:
            await producer.send_and_wait(MUNICIPAL_TOPIC, value=raw, key=key)
        except Exception as exc:
            if producer_is_broken(exc):
                await self._renew_producer(producer)
            raise
        self.municipal.append((event_id, sent, time.time(), t))
        return "acked", True
