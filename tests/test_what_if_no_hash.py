"""bench/what_if_no_hash.py: its patch takes the hash out of a receiver in the processes it
starts, and nowhere else (a real IncomingFile writing a real file, in a child interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from what_if_no_hash import SITECUSTOMIZE  # noqa: E402

RECEIVE = """
import sys
from pathlib import Path
from chimera_tk.net.peer.files import IncomingFile, TransferError
incoming = IncomingFile(Path(sys.argv[1]), "uid-1", 5, "0" * 64)  # not the SHA-256 of hello
incoming.write(b"hello")
try:
    incoming.finish()
    print("kept")
except TransferError:
    print("discarded")
"""


def _receive(tmp_path: Path, python_path: str | None) -> str:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if python_path:
        env["PYTHONPATH"] = python_path
    downloads = tmp_path / "downloads"
    downloads.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-c", RECEIVE, str(downloads)], env=env,
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def test_the_patch_removes_the_receivers_hash_check_only_where_it_is_installed(
        tmp_path: Path) -> None:
    assert _receive(tmp_path, None) == "discarded"  # the real check catches the wrong digest
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(SITECUSTOMIZE)
    assert _receive(tmp_path, str(patch)) == "kept"
