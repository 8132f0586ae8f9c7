"""A real step-ca on loopback for tests: built once, configured the way a team admin would.

The binary comes from ``scripts/build-step-ca`` (smallstep/certificates 0.19.0 from Debian 12's
Go sources, cached under build/step-ca/). If it cannot be built the tests FAIL rather than skip:
step-ca support is a promise, and CI must notice when it can no longer be checked.

The CA is configured without the ``step`` CLI, by the shipped admin path: ``chimera-identity
init`` makes the root, intermediate and JWK provisioner key, and ``use_step_ca`` (what
``chimera-identity step-ca`` runs) writes step-ca's ca.json from them and makes the provider's
enrollment tokens name the step-ca. Test files share this one copy.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509

from chimera_tk.identity.authority import Authority
from chimera_tk.identity.bootstrap import create_authority
from chimera_tk.identity.layout import AuthorityFiles, load_settings
from chimera_tk.identity.step_ca import use_step_ca
from chimera_tk.pki.ca_client import StepCAClient
from chimera_tk.pki.certs import load_pem_chain
from chimera_tk.pki.identity import Identity
from chimera_tk.pki.urls import url_host, url_port
from tests.test_identity_server import free_port

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build-step-ca"
BINARY = REPO / "build" / "step-ca" / "step-ca"
HEALTH_TIMEOUT_S = 20.0


def build_step_ca() -> Path:
    """The step-ca binary, built if not cached; fails the test (never skips) if it cannot be."""
    started = time.monotonic()
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 or not BINARY.is_file():
        pytest.fail(f"scripts/build-step-ca failed ({built.returncode}):\n"
                    f"{built.stdout[-3000:]}\n{built.stderr[-3000:]}", pytrace=False)
    print(f"step-ca ready in {time.monotonic() - started:.1f} s")
    return BINARY


@dataclass
class StepCA:
    """A running step-ca and the Chimera CA folder (provider side) it was configured from."""

    url: str
    directory: Path
    root: x509.Certificate
    root_bundle: Path
    log_path: Path

    def token(self, user_id: int) -> str:
        """A one-time token for ``user_id``, minted by the provider's own code."""
        authority = Authority.open(self.directory)
        try:
            return authority.enrollment_token(user_id)
        finally:
            authority.close()

    def client(self, identity: Identity | None = None) -> StepCAClient:
        mtls = None if identity is None else (identity.cert_path, identity.key_path)
        return StepCAClient(self.url, self.root_bundle, timeout=(5.0, 20.0),
                            client_identity=mtls)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def running_step_ca(binary: Path, base: Path, *,
                    provider_url: str | None = None) -> Iterator[StepCA]:
    """A Chimera CA folder in ``base/ca`` handed to a step-ca on a free loopback port.

    ``provider_url`` is where the identity provider for that folder will be served (invites
    name it); by default a free port nobody serves, for tests that only talk to step-ca.
    """
    directory = base / "ca"
    create_authority(directory, url=provider_url or f"https://127.0.0.1:{free_port()}",
                     team_name="Step team")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    use_step_ca(directory, url, listen=f"127.0.0.1:{port}")
    with serve_step_ca(binary, directory, base) as ca:
        yield ca


@contextlib.contextmanager
def serve_step_ca(binary: Path, directory: Path, base: Path) -> Iterator[StepCA]:
    """step-ca for a CA folder already handed to it (``use_step_ca``), until the block ends;
    again after a stop, with its database and address kept."""
    settings = load_settings(AuthorityFiles(directory))
    url = settings.ca_url
    config_path = use_step_ca(directory, url, listen=f"{url_host(url)}:{url_port(url)}")
    files = AuthorityFiles(directory)
    ca = StepCA(url=url, directory=directory,
                root=load_pem_chain(files.root_certificate.read_bytes())[0],
                root_bundle=files.root_certificate, log_path=base / "step-ca.log")
    # STEPPATH and HOME keep step-ca from writing ~/.step.
    env = {**os.environ, "STEPPATH": str(base), "HOME": str(base)}
    with ca.log_path.open("ab") as log:  # a restart appends
        process = subprocess.Popen([str(binary), str(config_path)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        _wait_for_health(ca, process)
        yield ca
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_health(ca: StepCA, process: subprocess.Popen[bytes]) -> None:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify= otherwise
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"step-ca exited ({process.returncode}):\n{ca.log()}", pytrace=False)
            try:
                answer = session.get(f"{ca.url}/health", verify=str(ca.root_bundle), timeout=2)
                if answer.status_code == 200 and answer.json().get("status") == "ok":
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
    finally:
        session.close()
    pytest.fail(f"step-ca did not become healthy within {HEALTH_TIMEOUT_S:g} s:\n{ca.log()}",
                pytrace=False)
