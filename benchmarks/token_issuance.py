#!/usr/bin/env python3
"""client_credentials token issuance: authserver with private_key_jwt beside node oidc-provider.

Both run in one go at the same concurrency (wrk -t2 -c8), since only ratios from one run mean
anything on a shared machine:

- oidc-provider 9 (``../shared/bench``), one process (WORKERS=1), client_secret_basic, opaque
  tokens in memory: the reference figure;
- authserver as production serves it: granian with several WSGI workers, AUTHSERVER_ENV=production
  with explicit secrets, a PostgreSQL (or SQLite) database migrated and filled by this script;
  each request carries a fresh RS384 client assertion (jwks inline), so the server verifies a
  signature, records the jti, signs an access token and records it. Measured twice: the tenant
  signing access tokens with RS256, then with ES256.

Every assertion is good once, so they are signed here in advance and ``wrk/assertions.lua``
sends each once. Run from the repository root::

    python benchmarks/token_issuance.py            # PostgreSQL, 2 workers, 10 s per server
    python benchmarks/token_issuance.py --db sqlite --workers 3 --duration 20

Needs ``wrk`` (Debian's package; installed with apt-get when missing and running as root),
node and npm, granian (``pip install -e '.[bench]'``) and, for PostgreSQL, the server binaries.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "system/Patient.rs"
CLIENT_KID = "bench-rs384"
OIDC_CLIENT = ("bench-client", "bench-secret-0123456789abcdef0123456789abcdef")
RESULT = re.compile(r"RESULT (.*)")


def main() -> None:
    args = parse_args()
    ensure_wrk()
    granian = ensure_granian()
    print(machine())
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="authserver-bench-") as tmp:
        work = Path(tmp)
        results = {"oidc-provider (1 process)": measure_oidc_provider(stack, work, args)}
        database_url = database(stack, work, args.db)
        port = free_port()
        config = authserver_config(database_url, work, port)
        clients, private_pem = prepare_authserver(config)
        server = start(
            stack,
            [str(granian), "--interface", "wsgi", "--factory", "--workers", str(args.workers)]
            + ["--blocking-threads", str(args.blocking_threads)]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            + ["authserver:create_app"],
            env={**os.environ, **{name: str(value) for name, value in config.items()}},
            cwd=REPO,
        )
        wait_for_port(port, server)
        for alg, client_id in clients.items():
            name = f"authserver {alg} access tokens ({args.workers} workers, {args.db})"
            url = f"http://127.0.0.1:{port}/t/bench-{alg.lower()}/token"
            results[name] = measure_authserver(work, url, client_id, private_pem, args)
        report(results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per server")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server")
    parser.add_argument("--workers", type=int, default=2, help="granian worker processes")
    parser.add_argument(
        "--blocking-threads",
        type=int,
        default=1,
        # One database round trip per request leaves little to overlap: threads only add GIL
        # contention (see README, "Benchmark: token issuance").
        help="granian threads per worker",
    )
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument(
        "--max-rps",
        type=int,
        default=6000,
        # Each wrk thread sends its own share of the assertions, and connections do not spread
        # evenly over the server's workers: one thread can send well over half of the requests.
        help="assertions are signed for up to this rate (split between the wrk threads)",
    )
    parser.add_argument(
        "--show-refusals",
        action="store_true",
        help="print the first refused answers of each wrk thread (slows the authserver runs)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=REPO.parent / "shared" / "bench",
        help="folder with oidc_server.mjs, package.json and wrk/post.lua",
    )
    return parser.parse_args()


# -- tools -----------------------------------------------------------------------------------


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is missing: sudo apt-get install -y wrk")
    print("installing wrk (Debian package) ...")
    if subprocess.run(["apt-get", "install", "-y", "wrk"], check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)


def ensure_granian() -> Path:
    granian = Path(sys.executable).parent / "granian"
    if not granian.exists():
        sys.exit(f"granian is missing: {sys.executable} -m pip install -e '{REPO}[bench]'")
    return granian


def machine() -> str:
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return f"machine: nproc={os.cpu_count()}, memory={int(memory) / 1024 / 1024:.1f} GiB"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(stack: ExitStack, command: list[str], **kwargs) -> subprocess.Popen:
    process = subprocess.Popen(command, start_new_session=True, **kwargs)
    stack.callback(stop, process)
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the process group we started, nothing else
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(f"nothing listens on port {port} after {timeout} s")


def run_wrk(url: str, script: Path, env: dict[str, str], seconds: int, args) -> dict[str, float]:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "-s"]
    output = subprocess.run(
        [*command, str(script), url],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for refusal in re.findall(r"^REFUSED .*$", output, re.MULTILINE):
        print(refusal)
    match = RESULT.search(output)
    if not match:
        sys.exit(f"wrk printed no RESULT line:\n{output}")
    return {key: float(value) for key, value in (pair.split("=") for pair in match[1].split())}


# -- oidc-provider ---------------------------------------------------------------------------


def measure_oidc_provider(stack: ExitStack, work: Path, args) -> dict[str, float]:
    folder = work / "oidc"
    folder.mkdir()
    for name in ("oidc_server.mjs", "package.json"):
        shutil.copy(args.reference / name, folder / name)
    print("npm install oidc-provider ...")
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=True
    )
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WORKERS": "1", "NODE_ENV": "production"}
    node = start(stack, ["node", "oidc_server.mjs"], cwd=folder, env=env)
    wait_for_port(port, node)
    basic = "Basic " + base64.b64encode(":".join(OIDC_CLIENT).encode()).decode()
    body = urlencode({"grant_type": "client_credentials", "scope": "system/Patient.read"})
    url = f"http://127.0.0.1:{port}/token"
    check = requests.post(
        url,
        data=body,
        headers={"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    check.raise_for_status()
    wrk_env = {"WRK_PATH": "/token", "WRK_BODY": body, "WRK_AUTH": basic}
    script = args.reference / "wrk" / "post.lua"
    run_wrk(url, script, wrk_env, args.warmup, args)
    result = run_wrk(url, script, wrk_env, args.duration, args)
    stop(node)
    return result


# -- authserver ------------------------------------------------------------------------------


def database(stack: ExitStack, work: Path, kind: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{work / 'bench.sqlite'}"
    from tests.pg import ThrowawayPostgres

    cluster = ThrowawayPostgres().start()
    stack.callback(cluster.stop)
    return cluster.create_database("bench")


def authserver_config(database_url: str, work: Path, port: int) -> dict[str, str]:
    return {
        "AUTHSERVER_ENV": "production",
        "AUTHSERVER_DATABASE_URL": database_url,
        "AUTHSERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AUTHSERVER_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AUTHSERVER_SECRET_KEY": secrets.token_urlsafe(32),
        "AUTHSERVER_INSTANCE_PATH": str(work / "instance"),
    }


def prepare_authserver(config: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """Migrate the database; one tenant per access-token alg, each with one backend client."""
    from flask_migrate import upgrade

    from authserver import create_app
    from authserver.clients import service as clients
    from authserver.extensions import db
    from authserver.tenancy import service as tenants

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": CLIENT_KID}
    app = create_app(config)
    made = {}
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        for alg in ("RS256", "ES256"):
            tenant = tenants.create_tenant(f"bench-{alg.lower()}", f"Bench {alg}")
            tenants.set_access_token_alg(tenant, alg)
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
    return made, pem


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


def measure_authserver(work: Path, url: str, client_id: str, pem: bytes, args):
    script = REPO / "benchmarks" / "wrk" / "assertions.lua"
    print(f"signing {args.max_rps * (args.warmup + args.duration)} assertions for {url} ...")
    check = sign_bodies((pem, client_id, url, 1))[0]
    response = requests.post(
        url, data=check, timeout=10, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    if response.status_code != 200:
        sys.exit(f"authserver refused the check request: {response.status_code} {response.text}")
    results = []
    for seconds in (args.warmup, args.duration):
        bodies = signed_bodies(pem, client_id, url, args.max_rps * seconds, work / "bodies.txt")
        env = {"WRK_BODIES": str(bodies), "WRK_THREADS": str(args.threads)}
        if args.show_refusals:
            env["WRK_SHOW_REFUSALS"] = "1"
        results.append(run_wrk(url, script, env, seconds, args))
    return results[-1]


def report(results: dict[str, dict[str, float]]) -> None:
    reference = next(iter(results.values()))
    print(f"\n{'server':58} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'x ref':>6}")
    for name, result in results.items():
        errors = sum(result[k] for k in result if k.startswith("err_"))
        ratio = result["rps"] / reference["rps"]
        print(
            f"{name:58} {result['rps']:8.0f} {result['p50_ms']:8.2f} {result['p99_ms']:8.2f}"
            f" {errors:7.0f} {ratio:6.2f}"
        )
    if any(result.get("err_status") for result in results.values()):
        print(
            "\nsome requests were refused: raise --max-rps (assertions ran out), or rerun with"
            " --show-refusals to see why"
        )


if __name__ == "__main__":
    main()
