"""Fill a profile with a few conversations, for screenshots and trying the window by hand.

    python scripts/demo_profile.py --data-dir /tmp/demo [--profile NAME] [--big 100000]
"""

from __future__ import annotations

import argparse
import time

from chimera_tk.profiles import profile_paths
from chimera_tk.store import Store
from chimera_tk.store.messages import telegram_uid
from chimera_tk.store.records import IncomingMessage

PEOPLE = [
    (1001, "user", "Ana Souza", "ana"),
    (1002, "user", "Bruno Lima", "bruno"),
    (-100200, "group", "Office 3rd floor", None),
    (-1001300, "channel", "Team announcements", None),
]


def fill(store: Store, big: int = 0) -> None:
    now = int(time.time() * 1000)
    for dialog_id, kind, title, username in PEOPLE:
        store.dialogs.upsert(dialog_id, kind, title, username=username)
    incoming = [
        IncomingMessage(1001, "demo-1", 1001, "Ana Souza", "Bom dia! Did the report arrive?",
                        now - 26 * 3600_000, "telegram", tg_msg_id=11),
        IncomingMessage(1001, "demo-2", 1001, "Ana Souza",
                        "I'm at the next desk now, so this one came straight over the LAN.",
                        now - 600_000, "lan"),
        IncomingMessage(-100200, telegram_uid(-100200, 5), 1002, "Bruno Lima",
                        "Lunch at 12:30?", now - 3600_000, "telegram", tg_msg_id=5),
        IncomingMessage(-1001300, telegram_uid(-1001300, 9), None, "",
                        "Friday release: 0.1 is out.", now - 7200_000, "telegram", tg_msg_id=9),
    ]
    store.messages.receive_many(incoming)
    for text, state, route in (("Yes, thanks — reading it now.", "sent", "telegram"),
                               ("Sending the slides over the LAN.", "delivered", "lan"),
                               ("And this one waits for you to come online.", "queued", None)):
        with store.transaction():
            message = store.messages.add_outgoing(1001, text)
            store.outbox.enqueue(message.id)
            if route:
                store.outbox.claim(message.id, route)
                store.outbox.complete(message.id, delivered=state == "delivered")
    if big:
        store.dialogs.upsert(2000, "user", f"Archive ({big:,} messages)")
        start = now - big * 60_000
        store.messages.receive_many(
            IncomingMessage(2000, f"big-{i}", 2000, "Archive", f"Archived message number {i}",
                            start + i * 60_000, "lan") for i in range(big))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--big", type=int, default=0)
    args = parser.parse_args()
    paths = profile_paths(args.profile, args.data_dir).ensure()
    store = Store.open(paths.database)
    fill(store, args.big)
    store.close()
    print(f"filled {paths.database}")


if __name__ == "__main__":
    main()
