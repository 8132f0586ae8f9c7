"""Cycles holding Tk objects are collected on the Tk thread, never in a worker thread."""

from __future__ import annotations

import gc
import threading

import pytest

from tests.conftest import pump_until


@pytest.mark.gui
def test_a_window_turns_automatic_collection_off_and_collects_on_the_tk_thread(app) -> None:
    assert not gc.isenabled()
    finalised_in: list[str] = []

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            finalised_in.append(threading.current_thread().name)

    def make_garbage_in_a_worker() -> None:
        Cycle()
        for _ in range(50_000):  # allocations that would trigger a collection here
            junk = [[], {}]  # noqa: F841

    worker = threading.Thread(target=make_garbage_in_a_worker, name="worker")
    worker.start()
    worker.join()
    assert finalised_in == []  # not collected in the worker
    assert pump_until(app, lambda: finalised_in, timeout=5)
    assert finalised_in == [threading.main_thread().name]


@pytest.mark.gui
def test_shutdown_collects_and_gives_automatic_collection_back(x_display, paths) -> None:
    from chimera_tk.app import build_app
    from chimera_tk.config import Config

    assert gc.isenabled()
    built = build_app(paths, Config(), theme="light")
    assert not gc.isenabled()
    built.shutdown()
    assert gc.isenabled()
