"""The atheris (libFuzzer) harnesses in fuzz/, one per wire codec, run for real.

The quick variant (20,000 inputs per codec) runs in the normal suite. The long run is the same
test with more inputs, ``CHIMERA_FUZZ_RUNS=1000000 python -m pytest --timeout 0 -s
tests/test_fuzz_atheris.py``, or one harness: ``python fuzz/fuzz_peer_frames.py --runs 1000000``.
A crash makes the harness exit non-zero and save the input; the test then shows libFuzzer's
report, traceback included.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.harness import parse_figures

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("CHIMERA_FUZZ_RUNS", "20000"))


def _require_atheris() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        supported = sys.platform == "linux" and platform.machine() == "x86_64"
        if os.environ.get("CI") == "true" and supported:
            pytest.fail("atheris is missing: pip install -e '.[test]' installs it here",
                        pytrace=False)
        pytest.skip("atheris has no wheel for this platform; the hypothesis fuzz tests still run")


@pytest.mark.parametrize("codec", ["discovery", "peer_frames", "pairing"])
def test_atheris_finds_no_input_that_breaks_the_codec(codec: str, tmp_path: Path) -> None:
    _require_atheris()
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "fuzz" / f"fuzz_{codec}.py"), "--runs", str(RUNS),
         "--corpus", str(tmp_path / "corpus"), "--artifacts", str(tmp_path / "crashes")],
        capture_output=True, text=True, timeout=max(120, RUNS // 200), cwd=REPO_ROOT)
    report = result.stderr + result.stdout
    assert result.returncode == 0, report[-6000:]
    figures = parse_figures(report)
    assert figures.get("inputs") == RUNS, report[-3000:]
    assert not list((tmp_path / "crashes").glob("crash-*"))
    assert figures["coverage_edges"] > 50  # the codec was instrumented, not just the harness
    print(f"\n{codec}: {figures}")
