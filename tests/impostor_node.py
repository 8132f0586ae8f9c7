"""A hostile node for LAN tests: a valid team certificate for one id, announcing another id.

    python -m tests.impostor_node --profile-dir DIR --cert-id 3003 --announce-id 2002

It runs the real DiscoveryWorker (announcing ``--announce-id``) and the real PeerWorker (with the
certificate for ``--cert-id``), prints every event as a JSON line, and on stdin ``report`` prints
how many messages reached its database. End of input stops it. ``--keylog FILE`` saves the TLS
secrets of the connections it accepts: everything the impostor itself could decrypt.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from chimera_tk.config import LanSettings
from chimera_tk.net.discovery.worker import DiscoveryWorker
from chimera_tk.net.peer.tls import TlsFiles
from chimera_tk.net.peer.worker import PeerWorker
from chimera_tk.store import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile-dir", type=Path, required=True)
    parser.add_argument("--cert-id", type=int, required=True)
    parser.add_argument("--announce-id", type=int, required=True)
    parser.add_argument("--keylog", type=Path, help="write the TLS secrets of the connections "
                        "it accepts here (what the impostor could decrypt)")
    args = parser.parse_args()
    root = args.profile_dir
    (root / "downloads").mkdir(parents=True, exist_ok=True)
    database = root / "chimera.db"
    Store.open(database).close()

    def emit(event: object) -> None:
        fields = dataclasses.asdict(event) if dataclasses.is_dataclass(event) else {}
        print(json.dumps({"event": type(event).__name__, **_plain(fields)}), flush=True)

    tls = TlsFiles(root / f"{args.cert_id}.pem", root / f"{args.cert_id}_crt.pem",
                   root / "ca_bundle.pem")
    peer = PeerWorker(args.cert_id, "impostor", tls, database, root / "downloads", emit)
    if args.keylog is not None:
        peer._server_ctx.keylog_filename = str(args.keylog)
    peer.start()
    discovery = DiscoveryWorker(args.announce_id, peer.port, LanSettings(), emit)
    discovery.start()
    print(json.dumps({"event": "started"}), flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            store = Store.open(database)
            count = store.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            store.close()
            print(json.dumps({"event": "report", "messages": count,
                              "refused_handshakes": peer.refused_handshakes}), flush=True)
    discovery.stop()
    peer.stop()
    discovery.join(5)
    peer.join(5)


def _plain(fields: dict) -> dict:
    return {key: value if isinstance(value, str | int | float | bool | type(None)) else str(value)
            for key, value in fields.items()}


if __name__ == "__main__":
    main()
