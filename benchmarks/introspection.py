"""Introspection throughput against the framework floor and a peer, measured in one run.

Starts authserver as production does (``wsgi:app`` on the chosen WSGI server, several workers)
on SQLite and on a throwaway PostgreSQL, creates tenants and tokens through the services, loads
``/t/{slug}/introspect`` with ``wrk`` at 8 connections (the gateway authenticating with its
secret, then with its ``introspect`` Bearer token), and prints rps, p50 and p99. In the same
run it measures the bare-Flask floor (``shared/bench/flask_floor.py``) on the same server stack
and node ``oidc-provider`` introspection in one process and in a cluster of one process per core,
and prints the ratios. Only ratios from one run mean anything: these machines swing by 2x.

    python benchmarks/introspection.py                  # everything, 10 s per measurement
    python benchmarks/introspection.py --backends sqlite --no-node --duration 5

Needs ``wrk`` (Debian package) and, for the peer, ``node`` and ``npm``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from common import NODE_CLIENT
from common import ROOT
from common import Result
from common import ThrowawayPostgres
from common import add_load_options
from common import authserver_environment
from common import basic
from common import environment
from common import free_port
from common import machine_size
from common import oidc_provider
from common import oidc_provider_installed
from common import post
from common import require_tools
from common import serving
from common import url
from common import wrk_post
from common import wsgi_command

TENANTS = ("bench-clinic-a", "bench-clinic-b", "bench-clinic-c")
BACKGROUND_TOKENS = 300  # per tenant, so the jti index is not a one-row table


def main() -> None:
    options = parse_args()
    require_tools("wrk", *(["node", "npm"] if options.node else []))
    if not (options.bench_dir / "flask_floor.py").exists():
        sys.exit(f"no flask_floor.py in {options.bench_dir}: pass --bench-dir")
    print(machine_size())
    print(f"wrk -t{options.threads} -c{options.connections} -d{options.duration}s, ")
    threads = f" x {options.blocking_threads} thread" if options.server == "granian" else ""
    print(f"server: {options.server} with {options.workers} workers{threads}\n")
    results: list[Result] = []
    floor = measure_floor(options)
    results.append(floor)
    for backend in options.backends:
        results.extend(measure_authserver(options, backend))
    node = measure_node(options) if options.node else []
    results.extend(node)
    report(results, floor, node)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_load_options(parser)
    parser.add_argument("--backends", default="sqlite,postgresql", type=lambda v: v.split(","))
    parser.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
    parser.add_argument("--no-node", dest="node", action="store_false")
    return parser.parse_args()


def check_answer(address: str, body: str, authorization: str, expected: bytes) -> None:
    """Refuse to benchmark an error page: the answer must be the one we mean to measure."""
    status, answer = post(address, body, authorization)
    if status != 200 or expected not in answer:
        sys.exit(f"unexpected answer from {address}: {status} {answer[:300]!r}")


# -- the floor ------------------------------------------------------------------------------


def measure_floor(options: argparse.Namespace) -> Result:
    port = free_port()
    command = wsgi_command(options, "flask_floor:app", port)
    env = dict(os.environ)
    with serving(command, cwd=options.bench_dir, env=env, ready=url(port, "/")):
        return wrk_post(
            options, f"bare Flask floor ({options.server})", url(port, "/echo"), "token=x"
        )


# -- authserver -----------------------------------------------------------------------------


def measure_authserver(options: argparse.Namespace, backend: str) -> list[Result]:
    """The gateway calling with its secret (Basic), then with its ``introspect`` token."""
    workdir = Path(tempfile.mkdtemp(prefix="authserver-bench-"))
    postgres = ThrowawayPostgres().start() if backend == "postgresql" else None
    try:
        database = (
            postgres.create_database("bench")
            if postgres
            else f"sqlite:///{workdir / 'bench.sqlite'}"
        )
        port = free_port()
        env = authserver_environment(database, workdir, port)
        with environment(env):
            path, body, authorization = prepare()
        command = wsgi_command(options, "wsgi:app", port)
        with serving(command, cwd=ROOT, env={**os.environ, **env}, ready=url(port, "/healthz")):
            check_answer(url(port, path), body, authorization, b'"active": true')
            name = f"authserver introspection ({backend})"
            results = [wrk_post(options, name, url(port, path), body, authorization)]
            bearer = "Bearer " + introspect_token(url(port, path), authorization)
            check_answer(url(port, path), body, bearer, b'"active": true')
            name = f"authserver introspection ({backend}, Bearer)"
            results.append(wrk_post(options, name, url(port, path), body, bearer))
            return results
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def prepare() -> tuple[str, str, str]:
    """Migrate, then make the tenants, a gateway, users and tokens through the services.

    The request to measure: the last tenant's gateway introspects the last token it issued.
    """
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
    return (
        f"/t/{TENANTS[-1]}/introspect",
        f"token={access_token}",
        basic(gateway_id, gateway_secret),
    )


def introspect_token(introspect_url: str, authorization: str) -> str:
    """The gateway's ``introspect`` token from the tenant's token endpoint (five minutes)."""
    token_url = introspect_url.removesuffix("/introspect") + "/token"
    form = "grant_type=client_credentials&scope=introspect"
    status, answer = post(token_url, form, authorization)
    if status != 200:
        sys.exit(f"no introspect token from {token_url}: {status} {answer[:300]!r}")
    return json.loads(answer)["access_token"]


# -- node oidc-provider ---------------------------------------------------------------------


def measure_node(options: argparse.Namespace) -> list[Result]:
    seed = secrets.token_urlsafe(32)[:43]
    results = []
    with oidc_provider_installed(options.bench_dir) as workdir:
        for workers in sorted({1, os.cpu_count() or 1}):
            port = free_port()
            with oidc_provider(workdir, port, workers, seed):
                address, body = url(port, "/token/introspection"), f"token={seed}"
                check_answer(address, body, basic(*NODE_CLIENT), b'"active":true')
                label = "cluster" if workers > 1 else "process"
                name = f"oidc-provider ({workers} {label})"
                results.append(wrk_post(options, name, address, body, basic(*NODE_CLIENT)))
    return results


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
