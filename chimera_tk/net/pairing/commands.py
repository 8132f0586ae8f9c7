"""``chimera pair``, ``chimera unpair``, ``chimera pairs`` and ``chimera --new --self-signed``.

``pair`` without ``--peer`` opens a pairing window and waits for the other person to call;
``pair --peer ADDRESS`` calls them. Both print the code and ask ``[y/N]``: nothing is pinned
unless both people answer yes. A running Chimera picks up new and removed pins within a second.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from typing import TextIO

from chimera_tk.config import Config
from chimera_tk.errors import ChimeraError, UserError
from chimera_tk.net.pairing.events import (
    PairingClosed,
    PairingCode,
    PairingFinished,
    PairingOpened,
    PairingRemoteConfirmed,
    sentence,
)
from chimera_tk.net.pairing.worker import PairingWorker
from chimera_tk.pki.identity import Identity, load_identity
from chimera_tk.pki.pairing import PinStore, pins_path
from chimera_tk.profiles import ProfilePaths

NO_IDENTITY = ("this profile has no certificate: make a personal one with chimera --new "
               "--self-signed --telegram-id N (or join a team)")


def run(command: str, paths: ProfilePaths, config: Config, args: argparse.Namespace, *,
        stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    if command == "pair":
        return pair(paths, config, address=args.peer, port=args.port, stdin=stdin,
                    stdout=stdout)
    if command == "unpair":
        return unpair(paths, args.user_id, stdout=stdout)
    if command == "pairs":
        return list_pairs(paths, stdout=stdout)
    raise UserError(f"unknown command {command}")


def new_self_signed(paths: ProfilePaths, user_id: int, *, stdout: TextIO | None = None) -> int:
    from chimera_tk.pki.personal import create_personal_identity

    identity = create_personal_identity(paths, user_id)
    print(f"Made a personal certificate for id {user_id}, valid until "
          f"{identity.not_after:%Y-%m-%d} UTC ({identity.cert_path.name}, key in "
          f"{identity.key_path.name}).\nPair with someone nearby: chimera pair (waits for them) "
          "or chimera pair --peer THEIR-ADDRESS.", file=stdout or sys.stdout)
    return 0


def pair(paths: ProfilePaths, config: Config, *, address: str | None, port: int | None,
         stdin: TextIO, stdout: TextIO) -> int:
    identity = _identity(paths)
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    worker = PairingWorker(identity.user_id, config.team.display_name, identity.key_path,
                           identity.cert_path, PinStore(pins_path(paths)), events.put,
                           port=port or config.lan.pairing_port,
                           window_s=config.lan.pairing_window_s)
    try:
        if address is None:
            worker.open()
        else:
            worker.pair_with(address)
        return _follow(worker, events, stdin, stdout)
    except ChimeraError as exc:
        raise UserError(str(exc)) from None
    finally:
        worker.stop()
        worker.join(5)


def _follow(worker: PairingWorker, events: queue.SimpleQueue, stdin: TextIO,
            stdout: TextIO) -> int:
    while True:
        event = events.get()
        if isinstance(event, PairingOpened):
            print(f"Waiting {event.seconds:.0f} s for the other person to call (port "
                  f"{event.port}): on their computer run chimera pair --peer THIS-ADDRESS, "
                  "or choose this computer in Pair with a nearby person…", file=stdout,
                  flush=True)
        elif isinstance(event, PairingCode):
            who = f"user {event.peer_id}" + (f" ({event.peer_name})" if event.peer_name else "")
            print(f"Pairing with {who} at {event.address}.\nCode: {event.code}\n"
                  "Does the other screen show exactly this code? [y/N] ", end="", file=stdout,
                  flush=True)
            threading.Thread(target=_ask, args=(worker, stdin), daemon=True).start()
        elif isinstance(event, PairingRemoteConfirmed):
            print("\nThe other person confirmed.", file=stdout, flush=True)
        elif isinstance(event, PairingFinished):
            if event.paired:
                print(f"\nPaired with user {event.peer_id}: Chimera now trusts their "
                      "certificate on the LAN.", file=stdout, flush=True)
                return 0
            print(f"\nNot paired: {sentence(event.reason)} Nothing was saved.", file=stdout,
                  flush=True)
            return 1
        elif isinstance(event, PairingClosed):
            print(f"Nobody called: {event.reason}. Nothing was saved.", file=stdout, flush=True)
            return 1


def _ask(worker: PairingWorker, stdin: TextIO) -> None:
    answer = stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        worker.confirm()
    else:
        worker.cancel()


def unpair(paths: ProfilePaths, user_id: int, *, stdout: TextIO) -> int:
    if not PinStore(pins_path(paths)).remove(user_id):
        raise UserError(f"user {user_id} is not paired with this profile (see chimera pairs)")
    print(f"Unpaired user {user_id}: their certificate is no longer trusted.", file=stdout)
    return 0


def list_pairs(paths: ProfilePaths, *, stdout: TextIO) -> int:
    pins = PinStore(pins_path(paths)).all()
    if not pins:
        print("No paired people.", file=stdout)
    for pin in pins:
        print(f"{pin.user_id}\t{pin.name or '-'}\tpaired {pin.paired_at}\t"
              f"SHA-256 {pin.fingerprint}", file=stdout)
    return 0


def _identity(paths: ProfilePaths) -> Identity:
    identity = load_identity(paths)
    if identity is None:
        raise UserError(NO_IDENTITY)
    return identity
