#!/usr/bin/env python3
"""client_credentials token issuance: authserver with private_key_jwt beside node oidc-provider.

Both run in one go at the same concurrency (wrk -t2 -c8), since only ratios from one run mean
anything on a shared machine:

- oidc-provider 9, one process, opaque tokens in memory, twice: as ``../shared/bench`` ships it
  (client_secret_basic), and with a ``private_key_jwt`` client sent the same RS384 assertions
  as authserver (``oidc_private_key_jwt.mjs``: verified, replays refused in memory);
- on PostgreSQL, the floor (``issuance_floor.py``): a bare WSGI app on the same server stack
  that does only what every Backend Services server must (verify the assertion, sign a token,
  record both durably), once with two minimal tables and once with authserver's own write;
- authserver as production serves it: granian with several WSGI workers, AUTHSERVER_ENV=production
  with explicit secrets, a PostgreSQL (or SQLite) database migrated and filled by this script;
  each request carries a fresh RS384 client assertion (jwks inline), so the server verifies a
  signature, records the jti, signs an access token and records it. Measured twice: the tenant
  signing access tokens with RS256, then with ES256.

Every assertion is good once, so they are signed here in advance and ``wrk/assertions.lua``
sends each once. Run from the repository root::

    python benchmarks/token_issuance.py            # PostgreSQL, 2 workers, 10 s per server
    python benchmarks/token_issuance.py --db sqlite --workers 3 --duration 20
    python benchmarks/token_issuance.py --no-floor --show-refusals

Needs ``wrk`` (Debian's package), node and npm, granian (``pip install -e '.[bench]'``) and, for
PostgreSQL, the server binaries.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

import issuance_floor
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
from common import wrk
from common import wsgi_command

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "system/Patient.rs"
CLIENT_KID = "bench-rs384"
NODE_ASSERTING_CLIENT = "bench-backend"
ASSERTIONS = ROOT / "benchmarks" / "wrk" / "assertions.lua"


def main() -> None:
    options = parse_args()
    require_tools("wrk", "node", "npm")
    print(machine_size())
    print(
        f"wrk -t{options.threads} -c{options.connections}, {options.warmup} s warm-up + "
        f"{options.duration} s; WSGI: granian, {options.workers} workers x "
        f"{options.blocking_threads} thread\n"
    )
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="authserver-bench-") as tmp:
        work = Path(tmp)
        node = stack.enter_context(oidc_provider_installed(options.bench_dir))
        results = [measure_oidc_provider(options, node)]
        if options.db == "postgresql":
            cluster = ThrowawayPostgres().start()
            stack.callback(cluster.stop)
            database = cluster.create_database("bench")
        else:
            database = f"sqlite:///{work / 'bench.sqlite'}"
        port = free_port()
        env = authserver_environment(database, work, port)
        with environment(env):
            clients, pem, jwk = prepare_authserver()
        results.append(measure_oidc_private_key_jwt(options, work, node, pem, jwk))
        if options.floor and options.db == "postgresql":
            issuance_floor.create_minimal_tables(database)
            for write in ("minimal", "authserver"):
                results.append(measure_floor(options, work, env, write, clients["ES256"], pem, jwk))
        command = wsgi_command(options, "authserver:create_app", port)
        command[-1:-1] = ["--factory"]
        with serving(command, cwd=ROOT, env={**os.environ, **env}, ready=url(port, "/healthz")):
            for alg, client_id in clients.items():
                name = f"authserver, {alg} access tokens ({options.db})"
                address = url(port, f"/t/bench-{alg.lower()}/token")
                results.append(measure_assertions(options, work, name, address, client_id, pem))
    report(results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_load_options(parser)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false", help="skip the floor (issuance_floor.py)"
    )
    parser.add_argument(
        "--max-rps",
        type=int,
        default=8000,
        # Each wrk thread sends its own share of the assertions, and connections do not spread
        # evenly over the server's workers: one thread can send well over half of the requests.
        help="assertions are signed for up to this rate (split between the wrk threads)",
    )
    parser.add_argument(
        "--show-refusals",
        action="store_true",
        help="print the first refused answers of each wrk thread (slows the authserver runs)",
    )
    return parser.parse_args()


# -- oidc-provider ---------------------------------------------------------------------------


def measure_oidc_provider(options: argparse.Namespace, workdir: Path) -> Result:
    """The reference as ``../shared/bench`` ships it: client_secret_basic, one process."""
    body = urlencode({"grant_type": "client_credentials", "scope": "system/Patient.read"})
    authorization = basic(*NODE_CLIENT)
    port = free_port()
    with oidc_provider(workdir, port):
        address = url(port, "/token")
        status, answer = post(address, body, authorization)
        if status != 200:
            sys.exit(f"oidc-provider refused the check request: {status} {answer!r}")
        env = {"WRK_PATH": "/token", "WRK_BODY": body, "WRK_AUTH": authorization}
        script = options.bench_dir / "wrk" / "post.lua"
        name = "oidc-provider 9, 1 process (client_secret_basic)"
        wrk(options, name, address, script, env, options.warmup)
        result = wrk(options, name, address, script, env)
    print(result.line(), flush=True)
    return result


def measure_oidc_private_key_jwt(
    options: argparse.Namespace, work: Path, workdir: Path, pem: bytes, jwk: dict[str, str]
) -> Result:
    """oidc-provider doing authserver's work: the same RS384 assertions, never used twice."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "NODE_ENV": "production",
        "BENCH_CLIENT_ID": NODE_ASSERTING_CLIENT,
        "BENCH_CLIENT_JWK": json.dumps(jwk),
        "SCOPE": SCOPE,
    }
    ready = url(port, "/.well-known/openid-configuration")
    with serving(["node", "oidc_private_key_jwt.mjs"], cwd=workdir, env=env, ready=ready):
        name = "oidc-provider 9, 1 process (private_key_jwt)"
        address = url(port, "/token")
        return measure_assertions(options, work, name, address, NODE_ASSERTING_CLIENT, pem)


# -- authserver ------------------------------------------------------------------------------


def prepare_authserver() -> tuple[dict[str, str], bytes, dict[str, str]]:
    """Migrate the database; one tenant per access-token alg, each with one backend client.

    Returns the client ids by alg, the clients' private key (PEM) and its public JWK.
    """
    from flask_migrate import upgrade

    from authserver import create_app
    from authserver.clients import service as clients
    from authserver.extensions import db
    from authserver.tenancy import service as tenants

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": CLIENT_KID}
    app = create_app()
    made = {}
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        for alg in ("RS256", "ES256"):
            tenant = tenants.create_tenant(f"bench-{alg.lower()}", f"Bench {alg}")
            if alg != tenant.access_token_alg:  # a new tenant signs with RS256
                tenants.set_access_token_alg(tenant, alg, now=True)
            registration = clients.register(
                tenant,
                name="Bench backend",
                auth_method="private_key_jwt",
                scopes=["system/Patient.rs", "system/Observation.rs"],
                jwks={"keys": [jwk]},
            )
            made[alg] = registration.client.client_id
        db.session.commit()
        db.engine.dispose()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return made, pem, jwk


def sign_bodies(job: tuple[bytes, str, str, int]) -> list[str]:
    pem, client_id, audience, count = job
    key = serialization.load_pem_private_key(pem, password=None)
    now = int(time.time())
    bodies = []
    for _ in range(count):
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_hex(32),
        }
        assertion = jwt.encode(
            claims, key, algorithm="RS384", headers={"kid": CLIENT_KID, "typ": "JWT"}
        )
        bodies.append(
            urlencode(
                {
                    "grant_type": "client_credentials",
                    "scope": SCOPE,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                }
            )
        )
    return bodies


def signed_bodies(pem: bytes, client_id: str, audience: str, count: int, path: Path) -> Path:
    processes = os.cpu_count() or 1
    jobs = [(pem, client_id, audience, -(-count // processes))] * processes
    with ProcessPoolExecutor(processes) as pool:
        lines = [body for chunk in pool.map(sign_bodies, jobs) for body in chunk]
    path.write_text("\n".join(lines) + "\n")
    return path


def measure_assertions(
    options: argparse.Namespace, work: Path, name: str, address: str, client_id: str, pem: bytes
) -> Result:
    """Warm up, then measure ``address`` with never-used assertions (``wrk/assertions.lua``)."""
    print(f"signing {options.max_rps * (options.warmup + options.duration)} assertions ...")
    status, answer = post(address, sign_bodies((pem, client_id, address, 1))[0])
    if status != 200:
        sys.exit(f"{name} refused the check request: {status} {answer!r}")
    env = {"WRK_THREADS": str(options.threads)}
    if options.show_refusals:
        env["WRK_SHOW_REFUSALS"] = "1"
    for seconds in (options.warmup, options.duration):
        count = options.max_rps * seconds
        env["WRK_BODIES"] = str(signed_bodies(pem, client_id, address, count, work / "bodies"))
        result = wrk(options, name, address, ASSERTIONS, env, seconds)
    print(result.line(), flush=True)
    return result


def measure_floor(
    options: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    write: str,
    client_id: str,
    pem: bytes,
    jwk: dict[str, str],
) -> Result:
    port = free_port()
    floor_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(ROOT),
        "FLOOR_WRITE": write,
        "FLOOR_CLIENT_JWK": json.dumps(jwk),
        "FLOOR_TENANT": "bench-es256",
        "FLOOR_CLIENT_ID": client_id,
    }
    command = wsgi_command(options, "issuance_floor:app", port)
    with serving(command, cwd=ROOT / "benchmarks", env=floor_env, ready=url(port, "/")):
        name = f"floor: verify, sign, {write} write"
        return measure_assertions(options, work, name, url(port, "/token"), client_id, pem)


def report(results: list[Result]) -> None:
    """The table, with each row's ratio to both oidc-provider set-ups (the first two rows)."""
    secret, asserting = results[:2]
    print(
        f"\n{'what':52} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
        f" {'x secret':>8} {'x pkjwt':>8}"
    )
    for result in results:
        print(
            f"{result.name:52} {result.rps:8.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f}"
            f" {result.errors:7d} {result.rps / secret.rps:8.2f} {result.rps / asserting.rps:8.2f}"
        )
    if any(result.errors for result in results):
        print(
            "\nsome requests were refused: raise --max-rps (assertions ran out), or rerun with"
            " --show-refusals to see why"
        )


if __name__ == "__main__":
    main()
