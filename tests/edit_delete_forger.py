"""A peer that tries to rewrite someone else's message, for the edit/delete netns tests.

    python -m tests.edit_delete_forger --profile-dir DIR --cert-id 2002 --to 1001 \
        --address 10.x.0.1 --uid UID --text "forged"

It holds a valid team certificate (``--cert-id``), connects to ``--to`` with the real PeerWorker,
sends EDIT for ``uid`` and prints one JSON line: whether the other side dropped the connection.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from chimera_tk.net.peer.protocol import Edit
from chimera_tk.net.peer.tls import TlsFiles
from chimera_tk.net.peer.worker import PeerWorker
from chimera_tk.store import Store
from chimera_tk.store.records import utc_now_ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile-dir", type=Path, required=True)
    parser.add_argument("--cert-id", type=int, required=True)
    parser.add_argument("--to", type=int, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=50052)
    parser.add_argument("--uid", required=True)
    parser.add_argument("--text", default="forged")
    args = parser.parse_args()
    root = args.profile_dir
    database = root / "forger.db"
    Store.open(database).close()
    tls = TlsFiles(root / f"{args.cert_id}.pem", root / f"{args.cert_id}_crt.pem",
                   root / "ca_bundle.pem")
    peer = PeerWorker(args.cert_id, "forger", tls, database, root / "downloads",
                      lambda _event: None, host="127.0.0.1", port=0)
    peer.start()
    try:
        peer.learn_address(args.to, args.address, args.port)
        channel = peer.connect(args.to)
        channel.send(Edit(args.uid, args.text, utc_now_ms()))
        deadline = time.monotonic() + 10
        while not channel.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        print(json.dumps({"dropped": channel.closed, "reason": channel.closed_reason}),
              flush=True)
    finally:
        peer.stop()
        peer.join(5)


if __name__ == "__main__":
    main()
