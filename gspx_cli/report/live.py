"""The animated progress display on a terminal (rich): a bar, then the counts line.

Its own module because rich.progress is ~20 ms to import: only a run that animates pays it.
"""

import time

from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from gspx_cli.report.timetext import hms


class LiveProgress(Progress):
    """A Progress that pulls fresh counts from a progress.ProgressText at each refresh (workers never
    touch the display).

    Two lines: the bar (file, bar, %, ETA, elapsed), then the counts, which are too long to share a line.
    """

    def __init__(self, console, refresh_per_second, text):
        self._text = text
        self._task = None  # before super(): Live renders once while being built, with no task yet
        self.counts = ""
        super().__init__(
            TextColumn("{task.description}"), BarColumn(bar_width=30), _PercentAndEta(),
            TextColumn("elapsed"), TimeElapsedColumn(),
            console=console, refresh_per_second=refresh_per_second, transient=True, get_time=time.monotonic,
        )
        self._task = self.add_task(text.verb, total=None)

    def get_renderables(self):
        if self._task is not None:
            self.counts = self._text.counts()
            description, done, total = self._text.bar()
            self.update(self._task, completed=done, total=total, description=description)
        yield from super().get_renderables()
        yield Text(self.counts, no_wrap=True, overflow="ellipsis")


class _PercentAndEta(ProgressColumn):
    """"42% eta 0:01:10" when the input size is known; nothing for stdin or a pipe."""

    max_refresh = 1.0  # an ETA that changes four times a second is hard to read

    def render(self, task):
        if task.total is None or not task.total:
            return Text("")
        eta = task.time_remaining
        eta_text = "?" if eta is None else hms(eta)
        return Text(f"{task.percentage:>3.0f}% eta {eta_text}")


