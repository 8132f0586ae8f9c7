"""The "Kept on your LAN" meter: a status bar label, and a small chart window it opens.

The figures come from :class:`~chimera_tk.store.lan_meter.LanMeterRepository` (a handful of rows);
the label reads them again, at most once per idle moment, after a LAN message was stored or
delivered. The chart is a plain Tk Canvas: bytes per day for the last two weeks, and the chats
that kept the most on the LAN.
"""

from __future__ import annotations

import tkinter as tk
from datetime import date
from tkinter import ttk

from chimera_tk.events import EventDispatcher, MessageChanged, MessageStored
from chimera_tk.store import Store
from chimera_tk.store.lan_meter import MeterFigures
from chimera_tk.views.formatting import human_size
from chimera_tk.views.theme import Palette

CHART_DAYS = 14
CHART_DIALOGS = 8
CHART_WIDTH = 600


def meter_text(figures: MeterFigures) -> str:
    """``Kept on LAN: 1.2 GB · 340 msgs`` (what the status bar shows)."""
    unit = "msg" if figures.messages == 1 else "msgs"
    return f"Kept on LAN: {human_size(figures.bytes)} · {figures.messages:,} {unit}"


def figures_text(figures: MeterFigures) -> str:
    unit = "message" if figures.messages == 1 else "messages"
    return f"{human_size(figures.bytes)} · {figures.messages:,} {unit}"


class LanMeterLabel(ttk.Label):
    """Click (or Enter / space when focused) opens the chart."""

    def __init__(self, master: tk.Misc, store: Store, dispatcher: EventDispatcher,
                 palette: Palette) -> None:
        super().__init__(master, cursor="hand2", takefocus=True)
        self._store = store
        self._palette = palette
        self._refresh_after: str | None = None
        self.chart: LanMeterChart | None = None
        self._unsubscribe = [dispatcher.subscribe(MessageStored, self._on_message),
                             dispatcher.subscribe(MessageChanged, self._on_message)]
        for sequence in ("<Button-1>", "<Return>", "<space>"):
            self.bind(sequence, lambda _e: self.open_chart())
        self.refresh()

    def refresh(self) -> None:
        self._refresh_after = None
        self.figures = self._store.lan_meter.totals()
        self.configure(text=meter_text(self.figures))
        if self.chart is not None and self.chart.winfo_exists():
            self.chart.redraw()

    def _on_message(self, event: MessageStored | MessageChanged) -> None:
        if event.message.transport == "lan" and self._refresh_after is None:
            self._refresh_after = self.after_idle(self.refresh)

    def open_chart(self) -> LanMeterChart:
        if self.chart is not None and self.chart.winfo_exists():
            self.chart.lift()
            self.chart.focus_set()
        else:
            self.chart = LanMeterChart(self.winfo_toplevel(), self._store, self._palette)
        return self.chart

    def destroy(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._refresh_after is not None:
            self.after_cancel(self._refresh_after)
        super().destroy()


class LanMeterChart(tk.Toplevel):
    """Bars on a Canvas: per day (last two weeks) and per chat. Esc or Ctrl+W closes it."""

    def __init__(self, master: tk.Misc, store: Store, palette: Palette) -> None:
        super().__init__(master)
        self._store = store
        self._palette = palette
        self.title("Kept on your LAN")
        self.configure(background=palette.surface)
        self.resizable(False, False)
        self.transient(master)  # type: ignore[arg-type]
        self.canvas = tk.Canvas(self, width=CHART_WIDTH, height=200, background=palette.surface,
                                highlightthickness=0)
        self.canvas.pack(fill="both", expand=True, padx=16, pady=(12, 4))
        buttons = ttk.Frame(self, padding=(16, 4, 16, 12))
        buttons.pack(fill="x")
        ttk.Button(buttons, text="Close", command=self.destroy).pack(side="right")
        for sequence in ("<Escape>", "<Control-w>"):
            self.bind(sequence, lambda _e: self.destroy())
        self.redraw()
        self.focus_set()

    def redraw(self) -> None:
        c, p = self.canvas, self._palette
        c.delete("all")
        total = self._store.lan_meter.totals()
        y = 4
        c.create_text(0, y, anchor="nw", fill=p.text, font="SunValleyBodyStrongFont",
                      text=f"Kept on your LAN: {figures_text(total)}", tags=("total",))
        y += 24
        c.create_text(0, y, anchor="nw", fill=p.muted, font="SunValleyCaptionFont",
                      text="Sent and received over the LAN instead of the internet.")
        y = self._draw_days(y + 34)
        y = self._draw_dialogs(y + 20)
        c.configure(height=y + 4)

    def _draw_days(self, top: int) -> int:
        c, p = self.canvas, self._palette
        c.create_text(0, top, anchor="nw", fill=p.text, font="SunValleyBodyStrongFont",
                      text=f"Last {CHART_DAYS} days")
        days = self._store.lan_meter.by_day(CHART_DAYS)
        peak = max((figures.bytes for _, figures in days), default=0)
        height, base = 110, top + 30 + 110
        c.create_text(CHART_WIDTH, top + 2, anchor="ne", fill=p.muted,
                      font="SunValleyCaptionFont",
                      text=f"highest day {human_size(peak)}" if peak else "")
        slot = CHART_WIDTH / len(days)
        for index, (day, figures) in enumerate(days):
            left, right = index * slot, (index + 1) * slot
            tag = f"day-{day.isoformat()}"
            # the whole column answers the pointer, so a day with nothing can be read too
            c.create_rectangle(left, base - height, right, base + 20, fill=p.surface, outline="",
                               tags=("day-slot", tag))
            bar = round(height * figures.bytes / peak) if peak else 0
            if figures.bytes and bar < 2:
                bar = 2  # a day with something is never drawn as nothing
            x0, x1 = left + slot * 0.18, right - slot * 0.18
            if bar:
                c.create_rectangle(x0, base - bar, x1, base, fill=p.lan, outline="",
                                   tags=("day-bar", tag))
            label = "today" if index == len(days) - 1 else day.strftime("%d")
            c.create_text((x0 + x1) / 2, base + 4, anchor="n", fill=p.muted,
                          font="SunValleyCaptionFont", text=label, tags=(tag,))
            c.tag_bind(tag, "<Enter>", lambda _e, d=day, f=figures: self._show_day(d, f))
        c.create_line(0, base, CHART_WIDTH, base, fill=p.muted)
        self._day_caption = c.create_text(0, base + 24, anchor="nw", fill=p.text,
                                          font="SunValleyCaptionFont", tags=("day-caption",))
        self._show_day(*days[-1])
        return base + 44

    def _show_day(self, day: date, figures: MeterFigures) -> None:
        """The figures of the day under the pointer (today's until the pointer comes)."""
        self.canvas.itemconfigure(self._day_caption,
                                  text=f"{day:%A %d %B}: {figures_text(figures)}")

    def _draw_dialogs(self, top: int) -> int:
        c, p = self.canvas, self._palette
        c.create_text(0, top, anchor="nw", fill=p.text, font="SunValleyBodyStrongFont",
                      text="By chat")
        rows = self._store.lan_meter.by_dialog(CHART_DIALOGS)
        y = top + 28
        if not rows:
            c.create_text(0, y, anchor="nw", fill=p.muted, font="SunValleyBodyFont",
                          text="Nothing yet: messages to people on your LAN will count here.")
            return y + 24
        peak = max(row.figures.bytes for row in rows) or 1
        name_width, value_width = 150, 170
        bar_space = CHART_WIDTH - name_width - value_width
        for row in rows:
            title = row.title or f"Chat {row.dialog_id}"
            if len(title) > 22:
                title = title[:21] + "…"
            c.create_text(0, y + 9, anchor="w", fill=p.text, font="SunValleyBodyFont",
                          text=title)
            length = max(2, round(bar_space * row.figures.bytes / peak))
            c.create_rectangle(name_width, y + 2, name_width + length, y + 16, fill=p.lan,
                               outline="", tags=("dialog-bar", f"dialog-{row.dialog_id}"))
            c.create_text(name_width + length + 8, y + 9, anchor="w", fill=p.muted,
                          font="SunValleyCaptionFont", text=figures_text(row.figures))
            y += 26
        return y
