"""Full-text search over 1,000,000 messages through ``MessageRepository.search``.

The history (200 chats, plus one small old chat) is generated from a seeded Zipf vocabulary, so a
few words are in a large share of the messages and thousands are in a handful; it is ingested in
batches, indexed as the product indexes them, and the build time is reported. Queries go
through the product's search, which makes the last word a prefix (search as you type), on a fresh
connection to the finished file. Each kind of query uses several different terms, each run a few
times; the figures are the median and p95 over all of those runs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import (
    Result,
    TextGenerator,
    add_dialogs,
    fill,
    finish,
    median,
    ms,
    now_ms,
    parse_args,
    percentile,
    say,
)

from chimera_tk.store import Store

TARGET_MS = 50.0
SMALL_DIALOG = 3000
BUSY_DIALOG = -1004  # one of the 200 chats (a group: a negative id), some 5,000 messages
REPEATS = 3


def query_plan(gen: TextGenerator) -> dict[str, list[tuple[str, int | None]]]:
    """Kind of query -> [(typed text, dialog filter)]."""
    vocabulary = len(gen.words)
    rare = [gen.word_at_rank(rank) for rank in range(vocabulary - 5000, vocabulary, 1000)]
    return {
        "common word": [(w, None) for w in ("the", "you", "and", "that", "for")],
        "rare word": [(w, None) for w in rare],
        "two words": [(q, None) for q in ("meeting tomorrow", "send file", "report friday",
                                         "coffee later", "server update")],
        "prefix": [(q, None) for q in ("mee", "tom", "rep", "th", "pr")],
        "one letter": [(q, None) for q in ("a", "t", "m", "s", "b")],
        "common word, one chat": [(w, SMALL_DIALOG) for w in ("the", "you", "and", "that",
                                                              "for")],
        # prefixes longer than any prefix index, of frequent words
        "long prefix": [(q, None) for q in ("what", "thank", "meet", "plea", "tomor")],
        "prefix, one chat": [(q, SMALL_DIALOG) for q in ("th", "a", "mee", "tom", "pr")],
        "common word, busy chat": [(w, BUSY_DIALOG) for w in ("the", "you", "and", "that",
                                                              "for")],
        "two words, busy chat": [(q, BUSY_DIALOG) for q in ("meeting tomorrow", "send file",
                                                            "the a", "you t", "and th")],
    }


def build(path: Path, total: int, gen: TextGenerator) -> tuple[float, int]:
    """(seconds inside receive_many, rows) for the whole history."""
    store = Store.open(path)
    try:
        dialogs = add_dialogs(store, 200)
        store.dialogs.upsert(SMALL_DIALOG, "user", "A quiet chat")
        start_ms = now_ms() - (total + 1000) * 1000
        spent = fill(store, gen, [SMALL_DIALOG], 50, start_ms=start_ms, prefix="small")
        step = max(total // 10, 1)

        def progress(done: int) -> None:
            if done % step == 0:
                say(f"  {done:>9,} messages in")

        spent += fill(store, gen, dialogs, total - 50, start_ms=start_ms + 100_000,
                      progress=progress)
        rows = store.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        return spent, rows
    finally:
        store.close()


def run_queries(path: Path, plan: dict[str, list[tuple[str, int | None]]]
                ) -> tuple[dict[str, list[float]], dict[str, int],
                           dict[tuple[str, int | None], list[float]]]:
    """(times by kind, results by kind, times by typed text)."""
    store = Store.open(path)
    times: dict[str, list[float]] = {kind: [] for kind in plan}
    by_text: dict[tuple[str, int | None], list[float]] = {}
    hits: dict[str, int] = {kind: 0 for kind in plan}
    try:
        for _ in range(REPEATS):
            for kind, queries in plan.items():
                for text, dialog_id in queries:
                    start = time.perf_counter()
                    found = store.messages.search(text, dialog_id=dialog_id, limit=50)
                    times[kind].append(time.perf_counter() - start)
                    by_text.setdefault((text, dialog_id), []).append(times[kind][-1])
                    hits[kind] += len(found)
                    ids = [m.id for m in found]
                    if ids != sorted(ids, reverse=True):
                        raise AssertionError(f"results of {text!r} are not newest first")
                    if dialog_id is not None and any(m.dialog_id != dialog_id for m in found):
                        raise AssertionError(f"results of {text!r} left the chat")
        return times, hits, by_text
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    total = 20_000 if args.quick else 1_000_000
    gen = TextGenerator(seed=5)
    plan = query_plan(gen)
    say(f"fts: building a history of {total:,} messages")
    with tempfile.TemporaryDirectory(prefix="chimera-bench-fts-") as tmp:
        path = Path(tmp) / "chimera.db"
        wall = time.perf_counter()
        spent, rows = build(path, total, gen)
        wall = time.perf_counter() - wall
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        say(f"  built in {wall:.1f} s ({spent:.1f} s inside receive_many), {size_mb:.0f} MB")
        times, hits, by_text = run_queries(path, plan)

    results = [
        Result("fts build time", spent, "s", note=f"{rows:,} rows"),
        Result("fts build rate", rows / spent, "msgs/s"),
        Result("fts database size", size_mb, "MB"),
    ]
    for kind, values in times.items():
        say(f"  {kind:<22} median {ms(median(values)):8.2f} ms  p95 "
            f"{ms(percentile(values, 95)):8.2f} ms  ({len(values)} runs, "
            f"{hits[kind] // REPEATS} results per pass)")
        say("      " + ", ".join(f"{text!r} {ms(median(by_text[text, chat])):.1f}"
                                 for text, chat in plan[kind]))
        results += [
            Result(f"fts {kind} median", ms(median(values)), "ms", TARGET_MS, "lower"),
            Result(f"fts {kind} p95", ms(percentile(values, 95)), "ms", TARGET_MS, "lower"),
        ]
    found_all = int(all(hits[kind] > 0 for kind in ("common word", "two words", "prefix",
                                                    "common word, one chat")))
    results.append(Result("fts queries found their words", found_all, "", 1, "equal"))
    return finish(f"fts ({rows:,} messages)", results, args.results)


if __name__ == "__main__":
    sys.exit(main())
