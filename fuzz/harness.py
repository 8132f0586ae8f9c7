"""The atheris (libFuzzer) driver shared by the per-codec scripts in this folder.

    python fuzz/fuzz_discovery.py --runs 1000000     # likewise fuzz_peer_frames.py, fuzz_pairing.py

Each script names one target of fuzz/targets.py and a few valid inputs to start from. The run
stops after ``--runs`` inputs; any exception other than the codec's own RemoteProtocolError
(which the targets absorb) is a crash: libFuzzer prints it, saves the input under
``--artifacts`` and the script exits non-zero. libFuzzer's final lines give the figures
(``#N DONE cov: E ft: F``, ``Done N runs in S second(s)``, ``average_exec_per_sec``);
:func:`parse_figures` reads them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(target_name: str, seeds: Callable[[], Iterable[bytes]]) -> None:
    parser = argparse.ArgumentParser(description=f"Fuzz the {target_name} codec with atheris.")
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("--max-len", type=int, default=4096, help="longest input in bytes")
    parser.add_argument("--corpus", type=Path, help="corpus folder (kept; default: a temp one)")
    parser.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()),
                        help="where crashing inputs are saved")
    args, libfuzzer_extra = parser.parse_known_args()

    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: pip install atheris (Linux x86_64 wheels exist)")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    with atheris.instrument_imports(include=["chimera_tk", "fuzz"]):
        from fuzz.targets import TARGETS
    target = TARGETS[target_name]

    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"chimera-fuzz-{target_name}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(seeds()):
        (corpus / f"seed-{number}").write_bytes(seed)
    args.artifacts.mkdir(parents=True, exist_ok=True)

    dictionary = Path(__file__).with_name(f"{target_name}.dict")
    if dictionary.exists():
        libfuzzer_extra.append(f"-dict={dictionary}")
    libfuzzer_args = [sys.argv[0], f"-seed={args.seed}", f"-max_len={args.max_len}",
                      f"-artifact_prefix={args.artifacts}{os.sep}", "-print_final_stats=1",
                      *libfuzzer_extra]
    if not any(Path(arg).is_file() for arg in libfuzzer_extra if not arg.startswith("-")):
        libfuzzer_args += [f"-runs={args.runs}", str(corpus)]  # else: replay the given files
    atheris.Setup(libfuzzer_args, target)
    atheris.Fuzz()


def parse_figures(output: str) -> dict[str, int]:
    """Figures from libFuzzer's own final lines (an empty dict if the run did not finish)."""
    figures: dict[str, int] = {}
    patterns = {r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)": ("runs", "coverage_edges", "features"),
                r"Done (\d+) runs in (\d+) second": ("inputs", "seconds"),
                r"stat::average_exec_per_sec:\s+(\d+)": ("exec_per_s",)}
    for line in output.splitlines():
        for pattern, names in patterns.items():
            match = re.match(pattern, line)
            if match:
                figures.update(zip(names, map(int, match.groups()), strict=True))
    return figures
