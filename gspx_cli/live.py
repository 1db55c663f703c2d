"""The animated progress display on a terminal (rich): a bar, then the counts line.

Its own module because rich.progress is ~20 ms to import: only a run that animates pays it.
"""

import time

from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text


def _clock(seconds):
    """H:MM:SS."""
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


class LiveProgress(Progress):
    """A Progress that pulls fresh counts at each refresh (workers never touch the display).

    Two lines: the bar (file, bar, %, ETA, elapsed), then the counts, which are too long to share a line.
    """

    def __init__(self, console, refresh_per_second, *, on_refresh):
        self._on_refresh = on_refresh  # before super(): Live renders once while being built
        self.counts = ""
        super().__init__(
            TextColumn("{task.description}"), BarColumn(bar_width=30), _PercentAndEta(),
            TextColumn("elapsed"), TimeElapsedColumn(),
            console=console, refresh_per_second=refresh_per_second, transient=True, get_time=time.monotonic,
        )

    def get_renderables(self):
        self._on_refresh()
        yield from super().get_renderables()
        yield Text(self.counts, no_wrap=True, overflow="ellipsis")


class _PercentAndEta(ProgressColumn):
    """"42% eta 0:01:10" when the input size is known; nothing for stdin or a pipe."""

    max_refresh = 1.0  # an ETA that changes four times a second is hard to read

    def render(self, task):
        if task.total is None or not task.total:
            return Text("")
        eta = task.time_remaining
        eta_text = "?" if eta is None else _clock(eta)
        return Text(f"{task.percentage:>3.0f}% eta {eta_text}")


