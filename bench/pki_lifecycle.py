"""Enroll and renew times against the built-in CA and a real step-ca, through the client code.

Each CA runs as it would for a team, on loopback: the built-in one as ``chimera-identity serve``;
the step-ca (built by ``scripts/build-step-ca``, cached) from a CA folder handed to it with
``chimera-identity step-ca``, with ``serve`` in front as the identity provider. An *enroll* is
:func:`enroll_with_invite` from start to end: pin the root, make the key and CSR, redeem the
invite for a token at the provider, have the CSR signed at the CA, check and write the files.
A *renew* is :func:`renew_certificate` of that profile (mutual TLS, check, atomic write). The
invites are made beforehand, as the admin would, and are not timed. N repetitions per CA; median
and p95 per CA. Every enrollment must certify the invited id, and every renewal keep it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import requests
from common import Result, finish, median, ms, parse_args, percentile, say

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the step-ca harness lives with the tests

from chimera_tk.config import Config, TeamSettings  # noqa: E402
from chimera_tk.identity.authority import Authority  # noqa: E402
from chimera_tk.identity.bootstrap import create_authority  # noqa: E402
from chimera_tk.identity.layout import AuthorityFiles  # noqa: E402
from chimera_tk.pki.enroll import enroll_with_invite  # noqa: E402
from chimera_tk.pki.invite import parse_invite  # noqa: E402
from chimera_tk.pki.lifecycle import renew_certificate  # noqa: E402
from chimera_tk.profiles import profile_paths  # noqa: E402
from tests.step_ca_harness import BINARY, BUILD_SCRIPT, running_step_ca  # noqa: E402
from tests.test_identity_server import free_port  # noqa: E402

IDENTITY_CLI = [sys.executable, "-m", "chimera_tk.identity.cli"]
ENROLL_TARGET_MS = 1000.0
RENEW_TARGET_MS = 500.0
FIRST_ID = 9_100_001


@contextlib.contextmanager
def serving(directory: Path, url: str, log_path: Path) -> Iterator[None]:
    """``chimera-identity serve`` for ``directory`` on ``url``'s loopback port until the end."""
    port = url.rsplit(":", 1)[1]
    with log_path.open("wb") as log:
        server = subprocess.Popen([*IDENTITY_CLI, "serve", "--dir", str(directory), "--listen",
                                   f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    session = requests.Session()
    session.trust_env = False
    try:
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start:\n{log_path.read_text()[-2000:]}")
            try:
                root = AuthorityFiles(directory).root_certificate
                if session.get(f"{url}/health", verify=str(root), timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        yield
    finally:
        session.close()
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def builtin_team(base: Path) -> Iterator[Path]:
    url = f"https://127.0.0.1:{free_port()}"
    create_authority(base / "ca", url=url, team_name="Bench team")
    with serving(base / "ca", url, base / "serve.log"):
        yield base / "ca"


@contextlib.contextmanager
def step_ca_team(base: Path) -> Iterator[Path]:
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 or not BINARY.is_file():
        raise RuntimeError(f"scripts/build-step-ca failed:\n{built.stderr[-2000:]}")
    url = f"https://127.0.0.1:{free_port()}"
    # running_step_ca reports a failed start with pytest.fail, which is not an Exception.
    try:
        with running_step_ca(BINARY, base, provider_url=url) as step_ca, \
                serving(step_ca.directory, url, base / "serve.log"):
            yield step_ca.directory
    except BaseException as exc:
        if isinstance(exc, Exception | KeyboardInterrupt | GeneratorExit):
            raise
        raise RuntimeError(str(exc)) from None


def measure(name: str, team: Callable[[Path], contextlib.AbstractContextManager[Path]],
            runs: int, base: Path) -> tuple[list[float], list[float], int]:
    """(enroll seconds, renew seconds, how many kept the right id) for ``runs`` users."""
    enrolls: list[float] = []
    renews: list[float] = []
    right = 0
    with team(base / name) as directory:
        authority = Authority.open(directory)
        try:
            invites = [parse_invite(authority.create_invite(FIRST_ID + i, "", timedelta(hours=1)))
                       for i in range(runs + 1)]
        finally:
            authority.close()
        for index, invite in enumerate(invites):
            paths = profile_paths(f"u{index}", base / name / "data").ensure()
            start = time.perf_counter()
            enrollment = enroll_with_invite(paths, invite)
            enrolled_s = time.perf_counter() - start
            config = Config(team=TeamSettings(ca_url=enrollment.ca_url,
                                              identity_url=enrollment.identity_url))
            start = time.perf_counter()
            renewed = renew_certificate(paths, config)
            renewed_s = time.perf_counter() - start
            if index == 0:
                continue  # warm-up: first TLS handshakes, imports, the CA's first database use
            enrolls.append(enrolled_s)
            renews.append(renewed_s)
            right += (enrollment.identity.user_id == invite.user_id == renewed.user_id
                      and renewed.serial != enrollment.identity.serial)
        say(f"{name}: {runs} enrollments and renewals at {enrollment.ca_url}")
    return enrolls, renews, right


def rows(name: str, enrolls: list[float], renews: list[float]) -> list[Result]:
    return [
        Result(f"pki enroll median ({name})", ms(median(enrolls)), "ms", ENROLL_TARGET_MS,
               "lower", "key + CSR + invite -> token + sign + check + write"),
        Result(f"pki enroll p95 ({name})", ms(percentile(enrolls, 95)), "ms"),
        Result(f"pki renew median ({name})", ms(median(renews)), "ms", RENEW_TARGET_MS,
               "lower", "mutual TLS renew + check + atomic write"),
        Result(f"pki renew p95 ({name})", ms(percentile(renews, 95)), "ms"),
    ]


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    runs = 5 if args.quick else 30
    results: list[Result] = []
    right = 0
    with tempfile.TemporaryDirectory(prefix="chimera-bench-pki-") as tmp:
        for name, team in (("builtin", builtin_team), ("step-ca", step_ca_team)):
            enrolls, renews, kept = measure(name, team, runs, Path(tmp))
            right += kept
            results += rows(name, enrolls, renews)
    results.append(Result("pki enrollments and renewals with the right id", right, "", 2 * runs,
                          "equal"))
    return finish("PKI lifecycle (enroll, renew)", results, args.results)


if __name__ == "__main__":
    sys.exit(main())
