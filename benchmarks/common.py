"""What the benchmarks share: the machine line, servers started and stopped, wrk and its RESULT
line, node ``oidc-provider`` from ``../shared/bench``, and authserver's production settings.

Only ratios from one run mean anything on these machines, so every script measures its peers
and floors in the same run with these helpers.
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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.pg import PG_BIN  # noqa: E402 - after the repository is importable
from tests.pg import ThrowawayPostgres  # noqa: E402
from tests.pg import free_port  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_BENCH_DIR = ROOT.parent / "shared" / "bench"
NODE_CLIENT = ("bench-client", "bench-secret-0123456789abcdef0123456789abcdef")
RESULT = re.compile(r"^RESULT (.*)$", re.MULTILINE)
REFUSED = re.compile(r"^REFUSED .*$", re.MULTILINE)

__all__ = [
    "BIN",
    "DEFAULT_BENCH_DIR",
    "NODE_CLIENT",
    "PG_BIN",
    "ROOT",
    "Result",
    "ThrowawayPostgres",
    "free_port",
]


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    def line(self) -> str:
        return (
            f"{self.name:<52} {self.rps:>9.0f} rps   p50 {self.p50_ms:6.2f} ms   "
            f"p99 {self.p99_ms:6.2f} ms   errors {self.errors}"
        )


def add_load_options(parser: argparse.ArgumentParser, *, duration: int = 10) -> None:
    """The options every benchmark takes: wrk's load and where ``../shared/bench`` is."""
    parser.add_argument("--duration", type=int, default=duration, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="WSGI workers")
    # One request at a time per worker: measured faster on two cores, with a p99 about half
    # that of granian's default thread pool (threads only contend for the GIL here).
    parser.add_argument("--blocking-threads", type=int, default=1, help="granian threads/worker")
    parser.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR)


def require_tools(*tools: str) -> None:
    """Exit with the command that installs what is missing (wrk, node and npm are Debian's)."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)}")


def machine_size() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    python = sys.version.split()[0]
    return f"machine: {os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, Python {python}"


def url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


# -- servers --------------------------------------------------------------------------------


def wsgi_command(options: argparse.Namespace, app: str, port: int) -> list[str]:
    """granian (or gunicorn, when ``options.server`` says so) serving the WSGI ``app``."""
    if getattr(options, "server", "granian") == "gunicorn":
        return [str(BIN / "gunicorn"), "-w", str(options.workers), "-b", f"127.0.0.1:{port}", app]
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
        "--log-level",
        "warning",
        app,
    ]


@contextmanager
def serving(
    command: list[str], *, cwd: Path, env: dict[str, str], ready: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (in a process group of its own) until the block ends; wait until GET
    ``ready`` answers at all. Yields the process; its output is shown only if it exits early."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_until_up(ready, process, log)
            yield process
        finally:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def _wait_until_up(address: str, process: subprocess.Popen[bytes], log: object) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            sys.exit(f"server exited:\n{log.read().decode(errors='replace')}")  # type: ignore[attr-defined]
        try:
            urllib.request.urlopen(address, timeout=1)  # noqa: S310 - our own loopback server
            return
        except urllib.error.HTTPError:
            return  # it answers, which is all we wait for
        except OSError:
            time.sleep(0.2)
    sys.exit(f"server did not come up at {address}")


def post(address: str, body: str, authorization: str = "") -> tuple[int, bytes]:
    """One form POST; its status and body, errors included."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(address, data=body.encode(), headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# -- wrk ------------------------------------------------------------------------------------


def wrk(
    options: argparse.Namespace,
    name: str,
    address: str,
    script: Path,
    env: dict[str, str],
    seconds: int | None = None,
) -> Result:
    """Run wrk with ``script`` (which prints post.lua's RESULT line) and parse that line.

    ``REFUSED ...`` lines the script prints (``benchmarks/wrk/assertions.lua`` with
    ``WRK_SHOW_REFUSALS``) are shown as they are.
    """
    seconds = options.duration if seconds is None else seconds
    command = ["wrk", f"-t{options.threads}", f"-c{options.connections}", f"-d{seconds}s"]
    output = subprocess.run(
        [*command, "-s", str(script), address],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for refusal in REFUSED.findall(output):
        print(refusal)
    match = RESULT.search(output)
    if match is None:
        sys.exit(f"wrk printed no RESULT line:\n{output}")
    fields = dict(item.split("=") for item in match.group(1).split())
    errors = sum(int(value) for key, value in fields.items() if key.startswith("err_"))
    return Result(
        name, float(fields["rps"]), float(fields["p50_ms"]), float(fields["p99_ms"]), errors
    )


def wrk_post(
    options: argparse.Namespace, name: str, address: str, body: str, authorization: str = ""
) -> Result:
    """One fixed POST with ``../shared/bench/wrk/post.lua``: a second to warm up, then measured."""
    script = options.bench_dir / "wrk" / "post.lua"
    path = "/" + address.split("/", 3)[3]
    env = {"WRK_PATH": path, "WRK_BODY": body, "WRK_AUTH": authorization}
    warm = ["wrk", "-t1", "-c2", "-d1s", "-s", str(script), address]
    subprocess.run(warm, env={**os.environ, **env}, check=True, capture_output=True)
    result = wrk(options, name, address, script, env)
    print(result.line(), flush=True)
    return result


# -- node oidc-provider ---------------------------------------------------------------------


@contextmanager
def oidc_provider_installed(bench_dir: Path) -> Iterator[Path]:
    """A temporary folder with ``oidc_server.mjs`` and oidc-provider installed by npm."""
    workdir = Path(tempfile.mkdtemp(prefix="authserver-bench-node-"))
    try:
        for name in ("oidc_server.mjs", "package.json"):
            shutil.copy(bench_dir / name, workdir / name)
        for script in Path(__file__).parent.glob("oidc_*.mjs"):  # our own set-ups of it
            shutil.copy(script, workdir / script.name)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=workdir,
            check=True,
            capture_output=True,
        )
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def oidc_provider(workdir: Path, port: int, workers: int = 1, seed: str = "") -> Iterator[None]:
    """``oidc_server.mjs`` listening on ``port``: ``workers`` processes, ``seed`` pre-stored."""
    env = {
        **os.environ,
        "PORT": str(port),
        "WORKERS": str(workers),
        "NODE_ENV": "production",
        **({"SEED_TOKEN": seed} if seed else {}),
    }
    ready = url(port, "/.well-known/openid-configuration")
    with serving(["node", "oidc_server.mjs"], cwd=workdir, env=env, ready=ready):
        yield


# -- authserver -----------------------------------------------------------------------------


def authserver_environment(database_url: str, workdir: Path, port: int) -> dict[str, str]:
    """authserver's settings as production has them: explicit secrets, production mode."""
    return {
        "AUTHSERVER_ENV": "production",
        "AUTHSERVER_DATABASE_URL": database_url,
        "AUTHSERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AUTHSERVER_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AUTHSERVER_SECRET_KEY": secrets.token_urlsafe(32),
        "AUTHSERVER_INSTANCE_PATH": str(workdir / "instance"),
    }


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` for the block (``create_app()`` reads its settings there)."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
