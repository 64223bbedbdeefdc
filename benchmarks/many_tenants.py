#!/usr/bin/env python3
"""Many tenants: what N clinics cost to create and to serve, against 3, measured in one run.

Against a throwaway PostgreSQL:

1. creates N tenants as an operator onboarding many clinics would: a loop over
   ``tenancy.service.create_tenant`` in one process, one commit per tenant (each makes its
   roles and its first RS256 signing key), timed tenant by tenant; then gives each one user,
   one SMART app, one resource server (the FHIR gateway, ``client_secret_basic``) and one
   Backend Services client (``private_key_jwt``), and issues the user an access token through
   the services (as ``introspection.py`` sets up); and times ``authserver tenant create``, the
   command, per call (a new process each time), and ``authserver tenant list`` once;
2. starts the server as production does (``wsgi:app`` on granian, one worker per core, one
   thread each) and loads, with ``wrk`` (``wrk/requests.lua``: one request per line, each
   thread going round a shuffled list), each of: SMART and OpenID discovery, the JWKS,
   introspection by each tenant's gateway with its secret, and Backend Services token
   issuance (``client_credentials`` with a never-used ES256 client assertion each time). Each
   is measured touching 3 tenants, then all N at random, then 3 again, on the same server and
   database, so only the number of tenants served differs; the N runs are warmed up until each
   tenant has been asked for about ``--warmup-sweeps`` times (so that every worker has served
   nearly every tenant), up to ``--max-warmup`` seconds;
3. reads each granian worker's resident memory (``VmRSS``) after the 3-tenant runs and after
   the N-tenant runs.

Only ratios from one run mean anything on a shared machine. Run from the repository root::

    python benchmarks/many_tenants.py                     # 10,000 tenants (about 20 minutes)
    python benchmarks/many_tenants.py --tenants 500 --duration 5
    python benchmarks/many_tenants.py --only introspection,token --show-refusals

Needs ``wrk`` (Debian's package), granian (``pip install -e '.[bench]'``) and the PostgreSQL
server binaries. The users' passwords are hashed with argon2's least cost here (the set-up is
not what is measured, and nobody signs in); everything else is as production makes it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from common import BIN
from common import PG_BIN
from common import ROOT
from common import Result
from common import ThrowawayPostgres
from common import add_load_options
from common import authserver_environment
from common import basic
from common import environment
from common import free_port
from common import machine_size
from common import post
from common import require_tools
from common import serving
from common import url
from common import wrk
from common import wsgi_command

REQUESTS = ROOT / "benchmarks" / "wrk" / "requests.lua"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "system/Patient.rs"
CLIENT_KID = "bench-es256"
FEW = 3  # the tenants of the reference runs
# argon2's least cost, for the set-up's users only (the server hashes with the defaults).
CHEAP_PASSWORDS = {
    "AUTHSERVER_ARGON2_TIME_COST": "1",
    "AUTHSERVER_ARGON2_MEMORY_COST": "8",
    "AUTHSERVER_ARGON2_PARALLELISM": "1",
}
STATE = "many_tenants.json"  # in a --keep folder: the settings, tenants and client key
ENDPOINTS = ("smart-configuration", "openid-configuration", "jwks", "introspection", "token")


@dataclass(frozen=True)
class Clinic:
    """One tenant as the load needs it."""

    slug: str
    gateway: str  # its resource server's Authorization header (client_secret_basic)
    access_token: str  # a user's access token, for the gateway to introspect
    backend_client_id: str  # its private_key_jwt client


@dataclass(frozen=True)
class Onboarding:
    """What making the tenants cost, in seconds per tenant."""

    create: list[float]  # create_tenant and its commit, tenant by tenant, in order
    furnish: list[float]  # user, app, resource server, backend client, token, commit
    database_bytes: int


@dataclass(frozen=True)
class Setup:
    """The database made (or kept from an earlier run), and what the load needs of it."""

    env: dict[str, str]  # authserver's settings (production), its public URL's port included
    clinics: list[Clinic]
    client_pem: bytes  # the backend clients' private key (one for all)

    @property
    def port(self) -> int:
        return int(self.env["AUTHSERVER_PUBLIC_URL"].rsplit(":", 1)[1])


def main() -> None:
    options = parse_args()
    require_tools("wrk")
    print(machine_size())
    print(
        f"{options.tenants} tenants; wrk -t{options.threads} -c{options.connections}, "
        f"{options.duration} s per measurement; WSGI: granian, {options.workers} workers x "
        f"{options.blocking_threads} thread\n",
        flush=True,
    )
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="authserver-bench-") as tmp:
        setup = stack.enter_context(database(options, Path(tmp)))
        if not options.only:
            return
        port = setup.port
        command = wsgi_command(options, "wsgi:app", port)
        env = {**os.environ, **setup.env}
        with serving(command, cwd=ROOT, env=env, ready=url(port, "/healthz")) as server:
            load = Load(options, Path(tmp), port, setup.client_pem)
            runs = load.measure_all(setup.clinics, server.pid)
    report(options, len(setup.clinics), runs, load.memory)


@contextmanager
def database(options: argparse.Namespace, work: Path) -> Iterator[Setup]:
    """A throwaway PostgreSQL with the tenants made and timed; with ``--keep``, one kept in that
    folder, made by the first run and served again by the next ones."""
    if options.keep is not None and (options.keep / STATE).exists():
        state = json.loads((options.keep / STATE).read_text())
        cluster = KeptPostgres(options.keep, state["postgres_port"]).start_server()
        print(f"the {len(state['clinics'])} tenants made earlier in {options.keep}", flush=True)
        try:
            yield Setup(
                state["env"], [Clinic(**c) for c in state["clinics"]], state["pem"].encode()
            )
        finally:
            cluster.stop()
        return
    if options.keep is not None and (options.keep / "data").exists():
        sys.exit(f"{options.keep} holds a cluster but no {STATE}: an earlier run failed; remove it")
    cluster = (KeptPostgres(options.keep) if options.keep else ThrowawayPostgres()).start()
    try:
        folder = options.keep or work
        env = authserver_environment(cluster.create_database("bench"), folder, free_port())
        client_key = ec.generate_private_key(ec.SECP256R1())
        with environment({**env, **CHEAP_PASSWORDS}):
            clinics, onboarding = prepare(options.tenants, client_jwk(client_key))
        report_onboarding(onboarding)
        measure_commands(options, env, clinics)
        setup = Setup(env, clinics, pem(client_key))
        if options.keep is not None:
            state = {
                "env": env,
                "clinics": [asdict(clinic) for clinic in clinics],
                "pem": setup.client_pem.decode(),
                "postgres_port": cluster.port,
            }
            (options.keep / STATE).write_text(json.dumps(state))
        yield setup
    finally:
        cluster.stop()


class KeptPostgres(ThrowawayPostgres):
    """A cluster in ``folder`` that outlives the run (``--keep``): stopped, never removed."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__()
        shutil.rmtree(self.root, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        self.root, self.data = folder, folder / "data"
        self.port = port or self.port

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_load_options(parser)
    parser.add_argument("--tenants", type=int, default=10_000, help="how many to make")
    parser.add_argument(
        "--only",
        default=",".join(ENDPOINTS),
        type=lambda value: [name for name in value.split(",") if name],
        help=f"endpoints to load, of {','.join(ENDPOINTS)} (empty: onboarding only)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up, 3 tenants")
    parser.add_argument(
        "--warmup-sweeps",
        type=int,
        default=6,
        help="warm the N-tenant runs up until each tenant was asked about this many times",
    )
    parser.add_argument("--max-warmup", type=int, default=60, help="seconds, N-tenant runs")
    parser.add_argument("--cli-calls", type=int, default=5, help="'authserver tenant create' runs")
    parser.add_argument(
        "--max-rps",
        type=int,
        default=5000,
        help="token runs: assertions are signed for up to this rate",
    )
    parser.add_argument(
        "--show-refusals", action="store_true", help="print refused answers (slows the runs)"
    )
    parser.add_argument(
        "--keep",
        type=lambda value: Path(value).resolve(),
        help="keep the database in this folder; a later run given it serves it again",
    )
    options = parser.parse_args()
    unknown = set(options.only) - set(ENDPOINTS)
    if unknown or options.tenants < FEW:
        parser.error(f"--only takes {', '.join(ENDPOINTS)}; --tenants at least {FEW}")
    return options


# -- onboarding -------------------------------------------------------------------------------


def prepare(count: int, backend_jwk: dict[str, str]) -> tuple[list[Clinic], Onboarding]:
    """Migrate; create ``count`` tenants one by one, then furnish each; time both."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from authserver import create_app
    from authserver.extensions import db
    from authserver.tenancy import service as tenants

    app = create_app()
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        # Slugs, not rows: every commit expires each row the session still holds, so a loop
        # keeping them all would spend time in proportion to the tenants made so far.
        slugs, create_times = [f"clinic-{number:05d}" for number in range(count)], []
        for number, slug in enumerate(slugs):
            started = time.perf_counter()
            tenants.create_tenant(slug, f"Clinic {number}")
            db.session.commit()
            create_times.append(time.perf_counter() - started)
            progress("created", number + 1, count, create_times)
        clinics, furnish_times = [], []
        for number, slug in enumerate(slugs):
            started = time.perf_counter()
            clinics.append(furnish(tenants.get_tenant(slug), backend_jwk))
            db.session.commit()
            furnish_times.append(time.perf_counter() - started)
            progress("furnished", number + 1, count, furnish_times)
        size = db.session.scalar(text("SELECT pg_database_size(current_database())"))
        db.engine.dispose()
    return clinics, Onboarding(create_times, furnish_times, int(size or 0))


def progress(what: str, done: int, count: int, times: list[float]) -> None:
    if done % 1000 == 0 or done == count:
        recent = times[-1000:]
        print(
            f"  {what} {done}/{count}: the last {len(recent)} took "
            f"{statistics.mean(recent) * 1000:.1f} ms each",
            flush=True,
        )


def furnish(tenant: Any, backend_jwk: dict[str, str]) -> Clinic:
    """A user, an app, a gateway, a backend client and the user's token, through the services."""
    from authserver.accounts import service as accounts
    from authserver.clients import service as clients
    from authserver.clients.models import RESOURCE_SERVER
    from authserver.tokens import service as tokens

    gateway = clients.register(
        tenant, name="FHIR gateway", auth_method="client_secret_basic", kind=RESOURCE_SERVER
    )
    smart_app = clients.register(
        tenant,
        name="SMART app",
        auth_method="none",
        redirect_uris=["https://app.example.test/callback"],
    ).client
    backend = clients.register(
        tenant,
        name="Lab feed",
        auth_method="private_key_jwt",
        scopes=[SCOPE],
        jwks={"keys": [backend_jwk]},
    ).client
    user = accounts.create_user(
        tenant, "dr.bench", "bench-password", ["physician"], fhir_user="Practitioner/1"
    )
    authorization = tokens.Authorization(
        tenant=tenant,
        client=smart_app,
        scope="openid fhirUser launch/patient patient/*.rs",
        user=user,
        context={"patient": "patient-1", "fhirUser": "Practitioner/1"},
    )
    # A week, so that a database kept with --keep still has live tokens in a later run.
    token = tokens.issue_access_token(authorization, expires_in=7 * 24 * 3600)["access_token"]
    return Clinic(
        slug=tenant.slug,
        gateway=basic(gateway.client.client_id, gateway.client_secret or ""),
        access_token=token,
        backend_client_id=backend.client_id,
    )


def report_onboarding(onboarding: Onboarding) -> None:
    create, furnish_ = onboarding.create, onboarding.furnish
    tenth = max(1, len(create) // 10)
    print(f"\nonboarding {len(create)} tenants, one process, one commit per tenant:")
    print(
        f"  create_tenant: {sum(create):.0f} s in all; per tenant mean "
        f"{statistics.mean(create) * 1000:.1f} ms, median {statistics.median(create) * 1000:.1f}"
        f" ms, p99 {percentile(create, 99) * 1000:.1f} ms; the first tenth "
        f"{statistics.mean(create[:tenth]) * 1000:.1f} ms, the last tenth "
        f"{statistics.mean(create[-tenth:]) * 1000:.1f} ms"
    )
    print(
        f"  user, app, gateway, backend client and a token: {sum(furnish_):.0f} s in all; per "
        f"tenant mean {statistics.mean(furnish_) * 1000:.1f} ms; the first tenth "
        f"{statistics.mean(furnish_[:tenth]) * 1000:.1f} ms, the last tenth "
        f"{statistics.mean(furnish_[-tenth:]) * 1000:.1f} ms"
    )
    print(f"  database: {onboarding.database_bytes / 2**20:.0f} MiB", flush=True)


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


def measure_commands(options: argparse.Namespace, env: dict[str, str], clinics: list[Clinic]):
    """``authserver tenant create`` per call (a process each), and ``tenant list`` of them all."""
    # This checkout's authserver, not whichever one the environment has installed.
    command_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    times = []
    for number in range(options.cli_calls):
        slug = f"cli-clinic-{number}"
        times.append(run_command(["tenant", "create", slug, "--name", slug], command_env))
    if times:
        print(
            f"  'authserver tenant create', {len(times)} calls: median "
            f"{statistics.median(times):.2f} s per call (a process each)"
        )
    listed = run_command(["tenant", "list"], command_env)
    total = len(clinics) + options.cli_calls
    print(f"  'authserver tenant list' of {total} tenants: {listed:.2f} s", flush=True)


def run_command(arguments: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "authserver"), *arguments], env=env, check=True, capture_output=True, cwd=ROOT
    )
    return time.perf_counter() - started


# -- load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    endpoint: str
    tenants: str  # "3", "N", "3 again"
    result: Result


class Load:
    """The measurements, on one running server."""

    def __init__(self, options: argparse.Namespace, work: Path, port: int, client_pem: bytes):
        self.options = options
        self.work = work
        self.port = port
        self.client_pem = client_pem
        self.memory: dict[str, list[int]] = {}  # when -> each worker's VmRSS in KiB
        self.estimates: dict[str, float] = {}  # endpoint -> rps with 3 tenants

    def measure_all(self, clinics: list[Clinic], server_pid: int) -> list[Run]:
        few, runs = clinics[:FEW], []
        for clinic in few:
            self.check(clinic)
        for endpoint in self.options.only:
            result = self.measure(endpoint, few, f"{endpoint}, {FEW}")
            runs.append(Run(endpoint, str(FEW), result))
            self.estimates[endpoint] = result.rps
        self.memory[f"after the {FEW}-tenant runs"] = worker_memory(server_pid)
        for endpoint in self.options.only:
            result = self.measure(endpoint, clinics, f"{endpoint}, {len(clinics)}")
            runs.append(Run(endpoint, "N", result))
        self.memory[f"after the {len(clinics)}-tenant runs"] = worker_memory(server_pid)
        for endpoint in self.options.only:
            result = self.measure(endpoint, few, f"{endpoint}, {FEW} again")
            runs.append(Run(endpoint, f"{FEW} again", result))
        return runs

    def check(self, clinic: Clinic) -> None:
        """Refuse to measure error answers: each request must be the one meant."""
        for endpoint in self.options.only:
            method, path, authorization, body = self.lines(endpoint, [clinic], 1)[0].split("\t")
            address = url(self.port, path)
            if method == "GET":
                status, answer = get(address)
            else:
                status, answer = post(address, body, authorization)
            if status != 200 or (endpoint == "introspection" and b'"active": true' not in answer):
                sys.exit(f"unexpected answer from {address}: {status} {answer[:300]!r}")

    def measure(self, endpoint: str, clinics: list[Clinic], name: str) -> Result:
        """Warm up, then measure ``endpoint`` touching ``clinics`` in random order."""
        if len(clinics) > FEW:
            warmup = self.warm_up(endpoint, clinics, name)
        else:
            warmup = self.options.warmup
            self.run(endpoint, clinics, warmup, name)
        result = self.run(endpoint, clinics, self.options.duration, name)
        print(f"{result.line()}   (warm-up {warmup} s)", flush=True)
        return result

    def warm_up(self, endpoint: str, clinics: list[Clinic], name: str) -> int:
        """Load until each tenant was asked for about ``--warmup-sweeps`` times (so that each
        worker has served nearly every one), or for ``--max-warmup`` seconds; how many."""
        wanted = self.options.warmup_sweeps * len(clinics)
        rps = self.estimates.get(endpoint, 1000.0)
        sent, spent = 0.0, 0
        while sent < wanted and spent < self.options.max_warmup:
            left = math.ceil((wanted - sent) / max(rps, 1.0))
            seconds = max(1, min(10, left, self.options.max_warmup - spent))
            result = self.run(endpoint, clinics, seconds, name, expected_rps=rps)
            sent, spent, rps = sent + result.rps * seconds, spent + seconds, result.rps
        return spent

    def run(
        self,
        endpoint: str,
        clinics: list[Clinic],
        seconds: int,
        name: str,
        expected_rps: float | None = None,
    ) -> Result:
        """One wrk run; token requests are signed for ``expected_rps`` (or ``--max-rps``)."""
        env = {"WRK_THREADS": str(self.options.threads)}
        if self.options.show_refusals:
            env["WRK_SHOW_REFUSALS"] = "1"
        rate = self.options.max_rps
        if expected_rps is not None:  # a warm-up: a replayed assertion does no harm there
            rate = min(rate, int(2 * expected_rps) + 100)
        env["WRK_REQUESTS"] = str(self.write(self.lines(endpoint, clinics, seconds, rate)))
        return wrk(self.options, name, url(self.port, "/"), REQUESTS, env, seconds)

    def lines(self, endpoint: str, clinics: list[Clinic], seconds: int, rate: int = 1) -> list[str]:
        """The run's requests, one per line (``wrk/requests.lua``), tenants in random order;
        token requests for ``rate`` a second."""
        if endpoint == "token":
            return self.token_lines(clinics, rate * seconds)
        shuffled = random.sample(clinics, len(clinics))
        if endpoint == "introspection":
            body = "token={}"
            return [
                f"POST\t/t/{c.slug}/introspect\t{c.gateway}\t{body.format(c.access_token)}"
                for c in shuffled
            ]
        path = {
            "smart-configuration": "/.well-known/smart-configuration",
            "openid-configuration": "/.well-known/openid-configuration",
            "jwks": "/.well-known/jwks.json",
        }[endpoint]
        return [f"GET\t/t/{clinic.slug}{path}\t\t" for clinic in shuffled]

    def token_lines(self, clinics: list[Clinic], count: int) -> list[str]:
        """``count`` token requests, each with a never-used assertion; the tenants in a new random
        order for each sweep through them."""
        order: list[Clinic] = []
        while len(order) < count:
            order.extend(random.sample(clinics, len(clinics)))
        public_url = f"http://127.0.0.1:{self.port}"
        jobs = [
            (self.client_pem, public_url, [(c.slug, c.backend_client_id) for c in chunk])
            for chunk in chunks(order[:count], os.cpu_count() or 1)
        ]
        with ProcessPoolExecutor(len(jobs)) as pool:
            return [line for part in pool.map(sign_token_requests, jobs) for line in part]

    def write(self, lines: list[str]) -> Path:
        path = self.work / "requests"
        path.write_text("\n".join(lines) + "\n")
        return path


def chunks(items: list[Any], count: int) -> list[list[Any]]:
    size = -(-len(items) // count)
    return [items[start : start + size] for start in range(0, len(items), size)]


def sign_token_requests(job: tuple[bytes, str, list[tuple[str, str]]]) -> list[str]:
    """Token request lines, each with a fresh ES256 assertion for its tenant's token URL."""
    client_pem, public_url, requests = job
    key = serialization.load_pem_private_key(client_pem, password=None)
    now = int(time.time())
    lines = []
    for slug, client_id in requests:
        path = f"/t/{slug}/token"
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": public_url + path,
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_hex(32),
        }
        assertion = jwt.encode(claims, key, algorithm="ES256", headers={"kid": CLIENT_KID})
        form = {
            "grant_type": "client_credentials",
            "scope": SCOPE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        lines.append(f"POST\t{path}\t\t{urlencode(form)}")
    return lines


def client_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": CLIENT_KID}


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def get(address: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(address, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def worker_memory(server_pid: int) -> list[int]:
    """VmRSS (KiB) of each process the server started (granian's workers)."""
    memory = []
    for pid in child_pids(server_pid):
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        memory.append(int(rss.split()[1]))
    return memory


def child_pids(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return sorted(children)


# -- the report -------------------------------------------------------------------------------


def report(
    options: argparse.Namespace, n: int, runs: list[Run], memory: dict[str, list[int]]
) -> None:
    print(f"\n{'what':22} {'3: rps':>8} {'p99 ms':>7} {f'{n}: rps':>10} {'p99 ms':>7}", end="")
    print(f" {'3 again':>8} {'p99 ms':>7} {'N / 3':>6}")
    for endpoint in options.only:
        few, many, again = (
            next(run.result for run in runs if run.endpoint == endpoint and run.tenants == which)
            for which in (str(FEW), "N", f"{FEW} again")
        )
        ratio = many.rps / statistics.mean([few.rps, again.rps])
        print(
            f"{endpoint:22} {few.rps:8.0f} {few.p99_ms:7.2f} {many.rps:10.0f} {many.p99_ms:7.2f}"
            f" {again.rps:8.0f} {again.p99_ms:7.2f} {ratio:6.2f}"
        )
    errors = sum(run.result.errors for run in runs)
    if errors:
        print(f"\n{errors} requests were refused or failed: rerun with --show-refusals")
    print("\ngranian workers' resident memory (VmRSS):")
    for when, sizes in memory.items():
        print(f"  {when}: " + ", ".join(f"{size / 1024:.0f} MiB" for size in sizes))


if __name__ == "__main__":
    main()
