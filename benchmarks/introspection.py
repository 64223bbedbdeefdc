"""Introspection throughput against the framework floor and a peer, measured in one run.

Starts authserver as production does (``wsgi:app`` on the chosen WSGI server, several workers)
on SQLite and on a throwaway PostgreSQL, creates tenants and tokens through the services, loads
``/t/{slug}/introspect`` with ``wrk`` at 8 connections, and prints rps, p50 and p99. In the same
run it measures the bare-Flask floor (``shared/bench/flask_floor.py``) on the same server stack
and node ``oidc-provider`` introspection in one process and in a cluster of one process per core,
and prints the ratios. Only ratios from one run mean anything: these machines swing by 2x.

    python benchmarks/introspection.py                  # everything, 10 s per measurement
    python benchmarks/introspection.py --backends sqlite --no-node --duration 5

Needs ``wrk`` (Debian package) and, for the peer, ``node`` and ``npm``.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import ThrowawayPostgres  # noqa: E402
from tests.pg import free_port  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_BENCH_DIR = ROOT.parent / "shared" / "bench"
TENANTS = ("bench-clinic-a", "bench-clinic-b", "bench-clinic-c")
BACKGROUND_TOKENS = 300  # per tenant, so the jti index is not a one-row table
NODE_CLIENT = ("bench-client", "bench-secret-0123456789abcdef0123456789abcdef")


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    def line(self) -> str:
        return (
            f"{self.name:<44} {self.rps:>9.0f} rps   p50 {self.p50_ms:6.2f} ms   "
            f"p99 {self.p99_ms:6.2f} ms   errors {self.errors}"
        )


@dataclass(frozen=True)
class Target:
    """One fixed POST for wrk."""

    port: int
    path: str
    body: str
    authorization: str


def main() -> None:
    options = parse_args()
    require_tools(options)
    print(machine_size())
    print(f"wrk -t{options.threads} -c{options.connections} -d{options.duration}s, ")
    threads = f" x {options.blocking_threads} thread" if options.server == "granian" else ""
    print(f"server: {options.server} with {options.workers} workers{threads}\n")
    results: list[Result] = []
    floor = measure_floor(options)
    results.append(floor)
    for backend in options.backends:
        results.append(measure_authserver(options, backend))
    node = measure_node(options) if options.node else []
    results.extend(node)
    report(results, floor, node)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql", type=lambda v: v.split(","))
    parser.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    # One request at a time per worker: measured faster, with a p99 about half that of
    # granian's default thread pool on two cores (threads only contend for the GIL here).
    parser.add_argument("--blocking-threads", type=int, default=1)
    parser.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR)
    parser.add_argument("--no-node", dest="node", action="store_false")
    return parser.parse_args()


def require_tools(options: argparse.Namespace) -> None:
    needed = ["wrk"] + (["node", "npm"] if options.node else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install -y wrk nodejs npm")
    if not (options.bench_dir / "flask_floor.py").exists():
        sys.exit(f"no flask_floor.py in {options.bench_dir}: pass --bench-dir")


def machine_size() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    python = sys.version.split()[0]
    return f"machine: {os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, Python {python}"


# -- the WSGI server ------------------------------------------------------------------------


def wsgi_command(options: argparse.Namespace, app: str, port: int) -> list[str]:
    if options.server == "granian":
        return [
            str(BIN / "granian"),
            "--interface",
            "wsgi",
            "--workers",
            str(options.workers),
            "--blocking-threads",
            str(options.blocking_threads),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ws",
            app,
        ]
    return [
        str(BIN / "gunicorn"),
        "-w",
        str(options.workers),
        "-b",
        f"127.0.0.1:{port}",
        app,
    ]


@contextmanager
def serving(command: list[str], *, cwd: Path, env: dict[str, str], ready: str) -> Iterator[None]:
    """Run ``command`` until the block ends; wait until GET ``ready`` answers."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until_up(ready, process, log)
            yield
        finally:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: object) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            sys.exit(f"server exited:\n{log.read().decode(errors='replace')}")  # type: ignore[attr-defined]
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - our own loopback server
            return
        except urllib.error.HTTPError:
            return  # it answers, which is all we wait for
        except OSError:
            time.sleep(0.2)
    sys.exit(f"server did not come up at {url}")


def load(options: argparse.Namespace, name: str, target: Target) -> Result:
    """Warm up for a second, then run wrk and parse post.lua's RESULT line."""
    script = options.bench_dir / "wrk" / "post.lua"
    env = {
        **os.environ,
        "WRK_PATH": target.path,
        "WRK_BODY": target.body,
        "WRK_AUTH": target.authorization,
    }
    url = f"http://127.0.0.1:{target.port}{target.path}"
    warm = ["wrk", "-t1", "-c2", "-d1s", "-s", str(script), url]
    subprocess.run(warm, env=env, check=True, capture_output=True)
    command = [
        "wrk",
        f"-t{options.threads}",
        f"-c{options.connections}",
        f"-d{options.duration}s",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    match = re.search(r"^RESULT (.*)$", output, re.MULTILINE)
    if match is None:
        sys.exit(f"wrk printed no RESULT line:\n{output}")
    fields = dict(item.split("=") for item in match.group(1).split())
    errors = sum(int(value) for key, value in fields.items() if key.startswith("err_"))
    result = Result(
        name, float(fields["rps"]), float(fields["p50_ms"]), float(fields["p99_ms"]), errors
    )
    print(result.line(), flush=True)
    return result


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def check_answer(target: Target, expected: bytes) -> None:
    """Refuse to benchmark an error page: the answer must be the one we mean to measure."""
    request = urllib.request.Request(  # noqa: S310 - our own loopback server
        f"http://127.0.0.1:{target.port}{target.path}",
        data=target.body.encode(),
        headers={
            "Authorization": target.authorization,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        body = response.read()
    if expected not in body:
        sys.exit(f"unexpected answer from {target.path}: {body[:300]!r}")


# -- the floor ------------------------------------------------------------------------------


def measure_floor(options: argparse.Namespace) -> Result:
    port = free_port()
    target = Target(port, "/echo", "token=x", "")
    command = wsgi_command(options, "flask_floor:app", port)
    with serving(command, cwd=options.bench_dir, env=dict(os.environ), ready=_url(port, "/")):
        return load(options, f"bare Flask floor ({options.server})", target)


def _url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


# -- authserver -----------------------------------------------------------------------------


def measure_authserver(options: argparse.Namespace, backend: str) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="authserver-bench-"))
    postgres = ThrowawayPostgres().start() if backend == "postgresql" else None
    try:
        url = (
            postgres.create_database("bench")
            if postgres
            else f"sqlite:///{workdir / 'bench.sqlite'}"
        )
        port = free_port()
        env = server_environment(url, workdir, port)
        target = prepare(env, port)
        command = wsgi_command(options, "wsgi:app", port)
        with serving(command, cwd=ROOT, env=env, ready=_url(port, "/healthz")):
            check_answer(target, b'"active": true')
            return load(options, f"authserver introspection ({backend})", target)
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def server_environment(database_url: str, workdir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "AUTHSERVER_ENV": "production",
        "AUTHSERVER_DATABASE_URL": database_url,
        "AUTHSERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AUTHSERVER_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AUTHSERVER_SECRET_KEY": secrets.token_urlsafe(32),
        "AUTHSERVER_INSTANCE_PATH": str(workdir / "instance"),
    }


def prepare(env: dict[str, str], port: int) -> Target:
    """Migrate, then make the tenants, a gateway, users and tokens through the services."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return _prepare(port)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _prepare(port: int) -> Target:
    from flask_migrate import upgrade

    from authserver import create_app
    from authserver.accounts import service as accounts
    from authserver.clients import service as clients
    from authserver.clients.models import RESOURCE_SERVER
    from authserver.extensions import db
    from authserver.tenancy import service as tenants
    from authserver.tokens import service as tokens

    app = create_app()
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        for slug in TENANTS:
            tenant = tenants.create_tenant(slug, slug.replace("-", " ").title())
            gateway = clients.register(
                tenant, name="FHIR gateway", auth_method="client_secret_basic", kind=RESOURCE_SERVER
            )
            smart_app = clients.register(
                tenant,
                name="SMART app",
                auth_method="none",
                redirect_uris=["https://app.example.test/callback"],
            ).client
            user = accounts.create_user(
                tenant, "dr.bench", "bench-password", ["physician"], fhir_user="Practitioner/1"
            )
            for number in range(BACKGROUND_TOKENS + 1):
                authorization = tokens.Authorization(
                    tenant=tenant,
                    client=smart_app,
                    scope="openid fhirUser launch/patient patient/*.rs",
                    user=user,
                    context={"patient": f"patient-{number}", "fhirUser": "Practitioner/1"},
                )
                access_token = tokens.issue_access_token(authorization)["access_token"]
            gateway_id, gateway_secret = gateway.client.client_id, gateway.client_secret or ""
            db.session.commit()
        db.engine.dispose()
    # The last tenant's gateway introspects the last token it issued.
    return Target(
        port,
        f"/t/{TENANTS[-1]}/introspect",
        f"token={access_token}",
        basic(gateway_id, gateway_secret),
    )


# -- node oidc-provider ---------------------------------------------------------------------


def measure_node(options: argparse.Namespace) -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="authserver-bench-node-"))
    try:
        for name in ("oidc_server.mjs", "package.json"):
            shutil.copy(options.bench_dir / name, workdir / name)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=workdir,
            check=True,
            capture_output=True,
        )
        seed = secrets.token_urlsafe(32)[:43]
        results = []
        for workers in sorted({1, os.cpu_count() or 1}):
            port = free_port()
            env = {
                **os.environ,
                "PORT": str(port),
                "WORKERS": str(workers),
                "SEED_TOKEN": seed,
                "NODE_ENV": "production",
            }
            target = Target(port, "/token/introspection", f"token={seed}", basic(*NODE_CLIENT))
            command = ["node", "oidc_server.mjs"]
            ready = _url(port, "/.well-known/openid-configuration")
            with serving(command, cwd=workdir, env=env, ready=ready):
                check_answer(target, b'"active":true')
                label = "cluster" if workers > 1 else "process"
                results.append(load(options, f"oidc-provider ({workers} {label})", target))
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- the report -----------------------------------------------------------------------------


def report(results: list[Result], floor: Result, node: list[Result]) -> None:
    print("\nratios (introspection rps / reference rps):")
    for result in results:
        if not result.name.startswith("authserver"):
            continue
        print(f"  {result.name}")
        print(f"    / bare Flask floor:       {result.rps / floor.rps:5.2f}  (target >= 0.80)")
        for peer in node:
            print(f"    / {peer.name + ':':<23}{result.rps / peer.rps:5.2f}")
        verdict = "meets" if result.p99_ms <= 5 else "misses"
        print(f"    p99 {result.p99_ms:.2f} ms {verdict} the 5 ms target")


if __name__ == "__main__":
    main()
