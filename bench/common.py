"""Helpers shared by the benchmark scripts: results and verdicts, statistics, Xvfb, test data.

Every script prints its figures with the target and a verdict, and appends the same rows as JSON
lines to ``--results FILE`` so ``bench/run`` can print one summary table. A timing that misses its
target is SHORT and never fails a run; only a broken invariant (a lost event, a bad exit code) is
FAIL and makes the script exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from chimera_tk.store import Store
from chimera_tk.store.messages import telegram_uid
from chimera_tk.store.records import IncomingMessage

# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """One figure. ``better`` is ``lower``, ``higher``, ``equal`` (an invariant) or ``info``.

    A figure measured beside a ceiling or a peer in the same run names it in ``peer`` with its
    ``peer_figure`` (same unit). ``ratio`` then says how many times better ours is (> 1: ours is
    better): ours / peer when higher is better, peer / ours when lower is better; it is computed
    when not given. ``ratio_target`` is a target on that ratio (ours must be at least this many
    times the peer), checked beside ``target``. A peer that could not run leaves
    ``peer_figure`` at None and says why in ``peer``; such a ratio row is ``n/a``.

    ``limit`` is the best figure this machine allows for ours (higher-is-better rows), derived
    from measurements of the same run (the note says how). A SHORT row whose target asks for
    more than the limit is LIMIT: short, and shown to be out of reach here.
    """

    metric: str
    value: float
    unit: str
    target: float | None = None
    better: str = "info"
    note: str = ""
    peer: str = ""
    peer_figure: float | None = None
    ratio: float | None = None
    ratio_target: float | None = None
    limit: float | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.peer_figure is not None:
            object.__setattr__(self, "ratio", speedup(self.value, self.peer_figure, self.better))

    @property
    def verdict(self) -> str:
        checks = []
        if self.better != "info" and self.target is not None:
            if self.better == "equal":
                checks.append("PASS" if self.value == self.target else "FAIL")
            elif self.better == "lower":
                checks.append("PASS" if self.value <= self.target else "SHORT")
            else:
                checks.append("PASS" if self.value >= self.target else "SHORT")
        if self.ratio_target is not None:
            if self.ratio is None or math.isnan(self.ratio):
                checks.append("n/a")
            else:
                checks.append("PASS" if self.ratio >= self.ratio_target else "SHORT")
        for verdict in ("FAIL", "SHORT", "n/a", "PASS"):
            if verdict in checks:
                if verdict == "SHORT" and self._target_beyond_limit():
                    return "LIMIT"
                return verdict
        return "info"

    def _target_beyond_limit(self) -> bool:
        if self.limit is None or self.better != "higher":
            return False
        asked = []
        if self.target is not None and self.value < self.target:
            asked.append(self.target)
        if self.ratio_target is not None and self.peer_figure is not None \
                and self.ratio is not None and self.ratio < self.ratio_target:
            asked.append(self.ratio_target * self.peer_figure)
        return bool(asked) and all(figure > self.limit for figure in asked)

    @property
    def target_text(self) -> str:
        parts = []
        if self.target is not None and self.better != "info":
            sign = {"lower": "<= ", "higher": ">= ", "equal": "= "}[self.better]
            parts.append(f"{sign}{format_number(self.target)} {self.unit}".rstrip())
        if self.ratio_target is not None:
            parts.append(f">= {format_number(self.ratio_target)}x peer")
        if self.limit is not None:
            parts.append(f"(machine limit {format_number(self.limit)} {self.unit})".rstrip())
        return "; ".join(parts) or "-"

    @property
    def figure_text(self) -> str:
        return f"{format_number(self.value)} {self.unit}".rstrip()

    @property
    def peer_text(self) -> str:
        if not self.peer:
            return "-"
        if self.peer_figure is None:
            return self.peer
        return f"{self.peer}: {format_number(self.peer_figure)} {self.unit}".rstrip()

    @property
    def ratio_text(self) -> str:
        if self.ratio is None or math.isnan(self.ratio):
            return "-"
        text = format_number(self.ratio)
        if self.ratio_target is not None and self.ratio < self.ratio_target \
                and float(text.replace(",", "")) >= self.ratio_target:
            text = f"{self.ratio:.3f}"  # rounded up to the target, it would read as met
        return f"{text}x"

    def as_json(self) -> dict[str, object]:
        """The fields plus the verdict (for readers of results.json)."""
        return {**asdict(self), "verdict": self.verdict}


def speedup(ours: float, peer: float, better: str) -> float:
    """How many times better ``ours`` is than ``peer`` (NaN when it cannot be said)."""
    try:
        if better == "higher":
            return ours / peer
        if better == "lower":
            return peer / ours
    except ZeroDivisionError:
        return math.nan
    return math.nan


def format_number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(results: Sequence[Result]) -> str:
    """The rows as an aligned plain-text table: metric, figure, peer, ratio, target, verdict.

    The peer and ratio columns appear only when some row has a peer."""
    with_peers = any(r.peer for r in results)
    header = ("metric", "figure", "ceiling/peer", "ratio", "target", "verdict")
    rows = [header]
    rows += [(r.metric, r.figure_text, r.peer_text, r.ratio_text, r.target_text, r.verdict)
             for r in results]
    if not with_peers:
        rows = [(row[0], row[1], row[4], row[5]) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                     + "  " + row[-1])
        if index == 0:
            lines.append("-" * (sum(widths) + 2 * len(widths) + 7))
    return "\n".join(lines)


def parse_args(description: str, argv: Sequence[str] | None = None,
               extra: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, a few seconds: proves the benchmark still works")
    parser.add_argument("--results", type=Path, metavar="FILE",
                        help="append the result rows to FILE as JSON lines")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def finish(title: str, results: Sequence[Result], results_file: Path | None) -> int:
    """Print the script's table, append its rows to the results file; 1 if an invariant failed."""
    print(f"\n== {title} ==")
    print(table(results))
    if results_file is not None:
        with results_file.open("a", encoding="utf-8") as out:
            for result in results:
                out.write(json.dumps(asdict(result)) + "\n")
    return 1 if any(r.verdict == "FAIL" for r in results) else 0


def load_results(path: Path) -> list[Result]:
    if not path.exists():
        return []
    fields = set(Result.__dataclass_fields__)
    rows = (json.loads(line) for line in path.read_text().splitlines() if line)
    return [Result(**{k: v for k, v in row.items() if k in fields}) for row in rows]


def say(text: str) -> None:
    print(text, flush=True)


# -- statistics ---------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile: the smallest sample that ``p`` % of the samples do not exceed."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def ms(seconds: float) -> float:
    return seconds * 1000.0


def timed(func: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


# -- X display ----------------------------------------------------------------------------------

XVFB = "Xvfb"
SCREEN = "1280x800x24"


def start_xvfb(timeout_s: float = 10.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start an Xvfb on a free display (it picks one with ``-displayfd``); (process, ':N')."""
    if shutil.which(XVFB) is None:
        raise RuntimeError("Xvfb is not installed and DISPLAY is not set")
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [XVFB, "-displayfd", str(write_fd), "-screen", "0", SCREEN, "-nolisten", "tcp",
             "-noreset"],
            pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(write_fd)
    buffer = b""
    deadline = time.monotonic() + timeout_s
    try:
        while not buffer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                raise RuntimeError("Xvfb did not report its display in time")
            chunk = os.read(read_fd, 64)
            if not chunk:
                raise RuntimeError(f"Xvfb exited early with code {proc.wait(5)}")
            buffer += chunk
    except BaseException:
        stop_process(proc)
        raise
    finally:
        os.close(read_fd)
    return proc, ":" + buffer.decode().strip()


def stop_process(proc: subprocess.Popen, timeout_s: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    return proc.returncode


@contextlib.contextmanager
def x_display() -> Iterator[str]:
    """The X display to use: ``$DISPLAY`` if set, else a private Xvfb for the block."""
    existing = os.environ.get("DISPLAY")
    if existing:
        yield existing
        return
    proc, display = start_xvfb()
    os.environ["DISPLAY"] = display
    try:
        yield display
    finally:
        os.environ.pop("DISPLAY", None)
        stop_process(proc)


# -- realistic text -----------------------------------------------------------------------------

# The most used chat words first; a Zipf law over this list plus generated words gives a vocabulary
# with a few very common terms and a long tail of rare ones, as real chat history has.
_COMMON_TEXT = """
the i you to a and it is that of in we for this be on have can not do my me with so at what
are just if will but your was all no get be it's i'm there ok go out up know about like
now when yes one how time see good think today then thanks tomorrow here want need come
meeting call send file please let going well back make after did sure work morning new
some day yeah more also week still right would could should any they them our us us
from by an or as his her their has had were been because lunch office report team
sorry hi hello great nice later soon already yet maybe really why where who which something
fine done check look last first next monday friday release version build test server laptop
message email phone number code update problem issue fix bug change review document slides
project plan budget client customer price order invoice payment account login password
coffee dinner home train bus car traffic late early weekend holiday trip flight hotel
photo picture video link share folder download upload print printer network wifi lan
telegram chat group channel admin invite join leave status online offline busy available
bom dia obrigado tudo bem até amanhã olá não sim também então reunião café
danke bitte morgen heute gut café über straße naïve résumé
"""
_COMMON_WORDS = _COMMON_TEXT.split()
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
_NAMES = ["Ana", "Bruno", "Carla", "Diego", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
          "Kemal", "Lena", "Marco", "Nadia", "Omar", "Paula", "Quentin", "Rosa", "Sven", "Tara"]


class TextGenerator:
    """Seeded, varied message texts over a Zipf-distributed vocabulary of ``vocabulary`` words."""

    def __init__(self, seed: int = 1, vocabulary: int = 30_000, zipf_s: float = 1.07) -> None:
        self.rng = random.Random(seed)
        words = list(dict.fromkeys(_COMMON_WORDS))
        seen = set(words)
        while len(words) < vocabulary:
            word = "".join(self.rng.choices(_SYLLABLES, k=self.rng.choice((2, 2, 3, 3, 4))))
            if word not in seen:
                seen.add(word)
                words.append(word)
        self.words = words
        total = 0.0
        self._cum_weights = []
        for rank in range(1, len(words) + 1):
            total += 1.0 / rank**zipf_s
            self._cum_weights.append(total)
        self._lengths = [1, 2, 3, 3, 4, 5, 5, 6, 7, 8, 9, 10, 12, 14, 18, 25, 40]

    def text(self) -> str:
        rng = self.rng
        words = rng.choices(self.words, cum_weights=self._cum_weights, k=rng.choice(self._lengths))
        roll = rng.random()
        if roll < 0.05:
            words.insert(rng.randrange(len(words) + 1), rng.choice(_NAMES))
        elif roll < 0.08:
            words.append(f"#{rng.randrange(1, 5000)}")
        elif roll < 0.10:
            words.append(f"https://example.org/{rng.choice(self.words)}/{rng.randrange(999)}")
        sentence = " ".join(words)
        return sentence[0].upper() + sentence[1:] + rng.choice((".", "", "", "?", "!", " :)"))

    def word_at_rank(self, rank: int) -> str:
        """The word with the given 1-based frequency rank."""
        return self.words[rank - 1]


def incoming_messages(gen: TextGenerator, dialog_ids: Sequence[int], count: int, *,
                      start_ms: int, step_ms: int = 1000, prefix: str = "b",
                      first: int = 0) -> Iterator[IncomingMessage]:
    """``count`` received messages spread over ``dialog_ids``, a mix of Telegram and LAN ones.

    Message ``i`` has Telegram id ``i + 1`` or uid ``<prefix>-<i>``, with ``i`` counting from
    ``first``; give later calls on the same dialogs a higher ``first`` so nothing is a duplicate.
    """
    rng = gen.rng
    for i in range(first, first + count):
        dialog_id = dialog_ids[rng.randrange(len(dialog_ids))] if len(dialog_ids) > 1 \
            else dialog_ids[0]
        sent_at = start_ms + (i - first) * step_ms
        outgoing = rng.random() < 0.3
        sender = None if outgoing else rng.randrange(1000, 1100)
        name = "" if outgoing else _NAMES[(sender or 0) % len(_NAMES)]
        if rng.random() < 0.7:
            yield IncomingMessage(dialog_id, telegram_uid(dialog_id, i + 1), sender, name,
                                  gen.text(), sent_at, "telegram", tg_msg_id=i + 1,
                                  outgoing=outgoing)
        else:
            yield IncomingMessage(dialog_id, f"{prefix}-{i}", sender, name, gen.text(), sent_at,
                                  "lan", outgoing=outgoing)


def batched(items: Iterable[IncomingMessage], size: int) -> Iterator[list[IncomingMessage]]:
    batch: list[IncomingMessage] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


_KINDS = ("user", "user", "user", "group", "supergroup", "channel")


def dialog_ids(count: int, first_id: int = 1001) -> list[int]:
    """The ids :func:`add_dialogs` gives: people positive, groups and channels negative."""
    return [first_id + i if _KINDS[i % len(_KINDS)] == "user" else -(first_id + i)
            for i in range(count)]


def add_dialogs(store: Store, count: int, first_id: int = 1001) -> list[int]:
    """``count`` dialogs of mixed kinds; returns their ids."""
    ids = dialog_ids(count, first_id)
    for index, dialog_id in enumerate(ids):
        kind = _KINDS[index % len(_KINDS)]
        store.dialogs.upsert(dialog_id, kind, f"{_NAMES[index % len(_NAMES)]} {kind} {index}")
    return ids


def fill(store: Store, gen: TextGenerator, dialog_ids: Sequence[int], count: int, *,
         start_ms: int, step_ms: int = 1000, batch_size: int = 10_000, prefix: str = "b",
         first: int = 0, progress: Callable[[int], None] | None = None) -> float:
    """Ingest ``count`` messages in batches; returns the seconds spent inside ``receive_many``."""
    spent = 0.0
    done = 0
    for batch in batched(incoming_messages(gen, dialog_ids, count, start_ms=start_ms,
                                           step_ms=step_ms, prefix=prefix, first=first),
                         batch_size):
        start = time.perf_counter()
        store.messages.receive_many(batch)
        spent += time.perf_counter() - start
        done += len(batch)
        if progress is not None:
            progress(done)
    return spent


def now_ms() -> int:
    return time.time_ns() // 1_000_000
