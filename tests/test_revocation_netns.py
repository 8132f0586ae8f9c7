"""A revoked peer is refused on a namespaced LAN within one CRL refresh.

Host c runs ``chimera-identity serve`` (the team CA) and Carol's Chimera; a and b are Alice's and
Bob's. All three joined by invite. Alice runs headless with a 2 s CRL refresh; the admin revokes
Bob with ``chimera-identity revoke --id``: Alice drops Bob's open connection, refuses his next
one (her log names the serial), and still talks to Carol.

Run twice: with the built-in CA, and with the CA folder handed to a real step-ca 0.19 on host c
(signing and renewal there; the provider publishes the CRL and forwards the admin's revocation).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.config import LanSettings, load_config
from chimera_tk.pki.identity import load_identity
from tests.lan_nodes import AppNode
from tests.netns import Network, require_netns
from tests.step_ca_harness import build_step_ca
from tests.test_team_netns import _identity, _join

pytestmark = pytest.mark.netns

ALICE, BOB, CAROL = 1001, 2002, 3003
IDENTITY = [sys.executable, "-m", "chimera_tk.identity.cli"]


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b", "c")) as net:
        yield net


def _received(node: AppNode, text: str) -> bool:
    return any(m["text"] == text and m["direction"] == "in" for m in node.export())


def _start_step_ca(network: Network, ca_dir: Path, scratch: Path) -> str:
    """Hand the CA folder to a real step-ca on host c (its bridge address, never outside the
    test network) and wait until it answers; returns its URL."""
    binary = build_step_ca()  # fails, never skips, when step-ca cannot be built
    host = network["c"]
    url = f"https://{host.address}:9443"
    _identity("step-ca", "--dir", str(ca_dir), "--ca-url", url, "--listen",
              f"{host.address}:9443")
    scratch.mkdir()
    with (scratch / "step-ca.log").open("wb") as log:
        host.popen([str(binary), str(ca_dir / "step-ca" / "ca.json")],
                   env=network.env(STEPPATH=str(scratch), HOME=str(scratch)),
                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while host.run([sys.executable, "-c", _HEALTH_PROBE, url,
                    str(ca_dir / "root_ca.crt")], check=False).returncode != 0:
        assert time.monotonic() < deadline, (scratch / "step-ca.log").read_text()[-3000:]
        time.sleep(0.2)
    return url


_HEALTH_PROBE = """import sys, requests
s = requests.Session(); s.trust_env = False
try:
    ok = s.get(sys.argv[1] + "/health", verify=sys.argv[2], timeout=2).json()["status"] == "ok"
except Exception:
    ok = False
sys.exit(0 if ok else 1)
"""


# With step-ca 0.19 (no CRL) the identity provider publishes the CRL, and the admin's revoke
# goes to step-ca as well (chimera_tk/identity/step_ca.py); the LAN must behave the same.
@pytest.mark.parametrize("ca", ["builtin", "step-ca"])
def test_revoked_peer_is_refused_within_one_crl_refresh(network: Network, tmp_path: Path,
                                                        ca: str) -> None:
    ca_dir = tmp_path / "team-ca"
    provider = network["c"]
    _identity("init", "--dir", str(ca_dir), "--url", f"https://{provider.address}:8443")
    step_ca_url = _start_step_ca(network, ca_dir, tmp_path / "step") if ca == "step-ca" else ""
    invites = {user_id: _identity("invite", "--dir", str(ca_dir), "--id", str(user_id))
               .strip().splitlines()[-1] for user_id in (ALICE, BOB, CAROL)}
    provider.popen([*IDENTITY, "serve", "--dir", str(ca_dir), "--listen",
                    f"{provider.address}:8443"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    alice = AppNode(network["a"], tmp_path / "a", "alice", ALICE,
                    lan=LanSettings(crl_refresh_s=2))
    bob = AppNode(network["b"], tmp_path / "b", "bob", BOB)
    carol = AppNode(network["c"], tmp_path / "c", "carol", CAROL)
    for node in (alice, bob, carol):
        _join(node, invites[node.user_id])
    assert load_config(alice.paths.config_file).lan.crl_refresh_s == 2  # --new kept it
    assert load_config(bob.paths.config_file).team.ca_url == \
        (step_ca_url or f"https://{provider.address}:8443")
    bob_serial = load_identity(bob.paths).serial

    alice.start_headless()
    alice.wait_for_log("team CRL loaded: 0 revoked")
    bob.start_headless()  # Bob stays connected to Alice: that connection must be dropped
    alice.wait_for_log(f"user {BOB} verified on the LAN")
    bob.wait_for_log(f"user {ALICE} verified on the LAN")

    revoked_at = time.monotonic()
    # On host c, where the admin runs the provider (and step-ca, which it must reach).
    revoked = provider.run([*IDENTITY, "revoke", "--dir", str(ca_dir), "--id", str(BOB)],
                           check=False, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    assert f"Revoked serial {bob_serial:x}" in revoked.stdout
    alice.wait_for_log(f"team CRL loaded: 1 revoked serial(s) {bob_serial:x}", timeout=10)
    alice.wait_for_log(f"certificate serial {bob_serial:x} is revoked", timeout=5)
    assert time.monotonic() - revoked_at < 2 + 5  # one refresh, plus fetch and log slack
    assert f"dropping user {BOB} at {network['b'].address}" in alice.log()
    assert bob.stop() == 0

    # Bob's next attempt is refused at the handshake; the message is not stored at Alice.
    refusals = alice.log().count(f"certificate serial {bob_serial:x} is revoked")
    bob.send(ALICE, "sent after my revocation", wait=6)  # its exit code is not the point
    alice.wait_for_log(f"certificate serial {bob_serial:x} is revoked", count=refusals + 1)
    assert not _received(alice, "sent after my revocation")

    # Carol's certificate is fine: she still reaches Alice.
    sent = carol.send(ALICE, "Carol is still welcome", wait=20)
    assert sent.returncode == 0, sent.stderr
    assert _received(alice, "Carol is still welcome")
    assert alice.stop() == 0
