#!/usr/bin/env python3
"""What if Chimera's receiver did not hash? ``bench/lan.py`` with that one step taken out.

The bare pair (the LAN ceiling) never hashes; Chimera checks every received file's SHA-256
before it keeps it, and on this machine the hash shares the same two CPUs with both TLS ends.
This runs ``bench/lan.py`` (same arguments) with the receiver's hashing replaced by a no-op in
the processes it starts (a ``sitecustomize`` on their ``PYTHONPATH``), to show how much of the
gap to the bare pair is the hash. The bench still checks each arrived file against the source's
SHA-256 itself, so a damaged file is still caught. A what-if, never a result: not part of
``bench/run``, and its figures are not Chimera's.

    python bench/what_if_no_hash.py --quick --size-mib 1024 --rounds 5 --methods chimera,bare
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SITECUSTOMIZE = '''
try:
    from chimera_tk.net.peer import files as _files
except ImportError:  # a process of another interpreter (the tools' venv): nothing to change
    _files = None

if _files is not None:
    class _NoHash:
        def __init__(self, digest):
            self._digest = digest

        def update(self, data):
            pass

        def hexdigest(self):
            return self._digest

    _init = _files.IncomingFile.__init__

    def _init_without_hash(self, downloads, uid, size, sha256):
        _init(self, downloads, uid, size, sha256)
        self._hasher = _NoHash(sha256)

    _files.IncomingFile.__init__ = _init_without_hash
'''


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="chimera-what-if-") as folder:
        Path(folder, "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, env.get("PYTHONPATH")) if p)
        print("WHAT-IF: Chimera's receiver does not hash (bench/what_if_no_hash.py)", flush=True)
        lan = Path(__file__).resolve().with_name("lan.py")
        return subprocess.call([sys.executable, str(lan), *sys.argv[1:]], env=env)


if __name__ == "__main__":
    sys.exit(main())
