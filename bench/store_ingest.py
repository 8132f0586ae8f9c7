"""Batched ingest into a real profile database: messages per second by batch size.

Each batch size gets a fresh WAL database file in a temporary folder, with the full schema (the
full-text index included) and 50 dialogs; the same pre-built messages go in through
``MessageRepository.receive_many`` in batches, and only the time inside that call is counted.
Rounds alternate the order of batch sizes so drift on a noisy machine spreads evenly.
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
    batched,
    dialog_ids,
    finish,
    incoming_messages,
    median,
    now_ms,
    parse_args,
    say,
)

from chimera_tk.store import Store

TARGET_MSGS_PER_S = 50_000


def ingest_once(folder: Path, messages: list, batch_size: int, tag: str) -> tuple[float, int]:
    """(seconds inside receive_many, rows inserted) for one fresh database."""
    store = Store.open(folder / f"ingest-{tag}.db")
    try:
        add_dialogs(store, 50)
        spent = 0.0
        inserted = 0
        for batch in batched(messages, batch_size):
            start = time.perf_counter()
            inserted += store.messages.receive_many(batch)
            spent += time.perf_counter() - start
        return spent, inserted
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    total = 10_000 if args.quick else 50_000
    sizes = [1_000, 5_000] if args.quick else [100, 1_000, 2_000, 5_000, 10_000]
    rounds = 1 if args.quick else 3

    gen = TextGenerator(seed=7)
    messages = list(incoming_messages(gen, dialog_ids(50), total, start_ms=now_ms() - total))
    with tempfile.TemporaryDirectory(prefix="chimera-bench-ingest-") as tmp:
        folder = Path(tmp)
        say(f"store ingest: {total:,} messages per run, batch sizes {sizes}, {rounds} round(s)")
        rates: dict[int, list[float]] = {size: [] for size in sizes}
        lost = 0
        for round_no in range(rounds):
            order = sizes if round_no % 2 == 0 else list(reversed(sizes))
            for size in order:
                spent, inserted = ingest_once(folder, messages, size, f"{size}-{round_no}")
                lost += total - inserted
                rates[size].append(total / spent)
                say(f"  round {round_no + 1} batch {size:>6,}: {total / spent:>9,.0f} msgs/s "
                    f"({spent:.2f} s)")

    per_size = {size: median(values) for size, values in rates.items()}
    best = max(per_size, key=per_size.__getitem__)
    results = [Result(f"store ingest, batch {size:,}", rate, "msgs/s")
                for size, rate in per_size.items()]
    results += [
        Result("store ingest best batch size", best, "msgs"),
        Result("store ingest rate (best batch)", per_size[best], "msgs/s", TARGET_MSGS_PER_S,
               "higher", note=f"median of {rounds} round(s), batch {best}"),
        Result("store ingest rows lost", lost, "msgs", 0, "equal"),
    ]
    return finish("store ingest", results, args.results)


if __name__ == "__main__":
    sys.exit(main())
