"""A man in the middle for pairing tests: answers pairing calls as "Bob" and calls the real Bob,
with its own personal certificate (it cannot sign with anyone else's key).

    python -m tests.pairing_mitm_node --dir DIR --id 3003 --target 10.x.0.2

Each side's PairingWorker confirms as soon as its code shows. Every event is printed as a JSON
line; end of input stops it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from chimera_tk.net.pairing.events import PairingCode
from chimera_tk.net.pairing.worker import PairingWorker
from chimera_tk.pki.certs import certificate_pem
from chimera_tk.pki.keys import generate_private_key, private_key_to_pem
from chimera_tk.pki.pairing import PinStore, make_personal_certificate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    (args.dir / "key.pem").write_bytes(private_key_to_pem(key))
    (args.dir / "cert.pem").write_text(certificate_pem(make_personal_certificate(key, args.id)))
    workers: dict[str, PairingWorker] = {}

    def emitter(side: str):
        def emit(event: object) -> None:
            fields = dataclasses.asdict(event) if dataclasses.is_dataclass(event) else {}
            print(json.dumps({"side": side, "event": type(event).__name__, **fields}),
                  flush=True)
            if isinstance(event, PairingCode):
                workers[side].confirm()
        return emit

    for side in ("towards-alice", "towards-bob"):
        workers[side] = PairingWorker(args.id, "Bob", args.dir / "key.pem", args.dir / "cert.pem",
                                      PinStore(args.dir / f"pins-{side}.json"), emitter(side),
                                      window_s=60)
    workers["towards-alice"].open()
    workers["towards-bob"].pair_with(args.target)
    print(json.dumps({"event": "started"}), flush=True)
    for _line in sys.stdin:
        pass
    for worker in workers.values():
        worker.stop()
        worker.join(5)


if __name__ == "__main__":
    main()
