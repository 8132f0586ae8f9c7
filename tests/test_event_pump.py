"""The one road from workers to Tk: bounded batches, every event applied, failures isolated."""

import itertools
import threading
import time
from dataclasses import dataclass

import pytest

from chimera_tk.events import EventDispatcher, EventPump, EventQueue, StatusChanged
from tests.conftest import pump_until

pytestmark = pytest.mark.gui


@dataclass(frozen=True, slots=True)
class Tick:
    n: int


def test_five_thousand_events_from_a_worker_all_applied_while_timers_keep_running(
        x_display: str) -> None:
    import tkinter as tk

    root = tk.Tk()
    try:
        events, dispatcher = EventQueue(), EventDispatcher()
        applied: list[int] = []

        def slow_handler(event: Tick) -> None:
            applied.append(event.n)
            time.sleep(0.0002)  # a handler doing real widget work

        dispatcher.subscribe(Tick, slow_handler)
        pump = EventPump(root, events, dispatcher)
        timer_fired_at: list[float] = []

        def timer() -> None:
            timer_fired_at.append(time.perf_counter())
            root.after(10, timer)

        pump.start()
        timer()
        worker = threading.Thread(target=lambda: [events.post(Tick(i)) for i in range(5000)])
        worker.start()
        worker.join()
        assert pump_until(root_app(root), lambda: len(applied) == 5000, timeout=30)
        assert applied == list(range(5000))  # in order, none lost, none doubled
        gaps = [b - a for a, b in itertools.pairwise(timer_fired_at)]
        print(f"timer ticks {len(timer_fired_at)}, longest gap {max(gaps) * 1000:.1f} ms")
        # 5000 x 0.2 ms is a second of handler work; the timer must have run in between,
        # which only happens if the pump yields between bounded batches.
        assert len(timer_fired_at) >= 20
        pump.stop()
    finally:
        root.destroy()


def test_a_failing_handler_is_logged_and_the_others_still_run(caplog) -> None:
    dispatcher = EventDispatcher()
    seen: list[str] = []

    def broken(_event: StatusChanged) -> None:
        raise ValueError("boom")

    dispatcher.subscribe(StatusChanged, broken)
    dispatcher.subscribe(StatusChanged, lambda e: seen.append(e.text))
    dispatcher.dispatch(StatusChanged("lan", "2 peers"))
    assert seen == ["2 peers"]
    assert dispatcher.failures == 1
    assert "boom" in caplog.text


def test_unsubscribed_handlers_are_not_called() -> None:
    dispatcher = EventDispatcher()
    seen: list[object] = []
    unsubscribe = dispatcher.subscribe(Tick, seen.append)
    dispatcher.dispatch(Tick(1))
    unsubscribe()
    dispatcher.dispatch(Tick(2))
    assert seen == [Tick(1)]


def test_status_events_reach_the_status_bar(app) -> None:
    app.events.post(StatusChanged("lan", "LAN: 3 peers"))
    assert pump_until(app, lambda: app.window.status_bar.text("lan") == "LAN: 3 peers")


class root_app:
    def __init__(self, root: object) -> None:
        self.root = root
