"""SIGKILL the sender or the receiver at random moments: nothing lost, nothing doubled.

The quick variant (10 kills, 100 texts, 3 files) runs in the normal suite; the full one (100
kills, 1,000 texts, 20 files) is ``bench/crash_consistency.py`` (``bench/run --only
crash_consistency``). The seed is printed; ``CHIMERA_CRASH_SEED=N`` replays a run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import crash_harness
from tests.netns import Network, require_netns

pytestmark = pytest.mark.netns


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b")) as net:
        yield net


def test_random_sigkills_lose_and_double_nothing(network: Network, tmp_path: Path) -> None:
    plan = crash_harness.CrashPlan(seed=crash_harness.default_seed(), kills=10, texts=100,
                                   files=3, max_file_bytes=24 << 20, max_pause_s=0.8,
                                   settle_timeout_s=60)
    report = crash_harness.run(network, tmp_path, plan)
    assert report.kills == 10
    assert (report.texts, report.files) == (100, 3)
    assert report.problems == []
    assert (report.lost, report.duplicated, report.wrong_text) == (0, 0, 0), report.summary()
    assert report.files_identical == 3, report.summary()
    assert (report.outbox_left, report.sender_failed) == (0, 0), report.summary()
    assert (report.partial_files_left, report.orphan_files) == (0, 0), report.summary()
    assert (report.integrity_sender, report.integrity_receiver) == ("ok", "ok")
