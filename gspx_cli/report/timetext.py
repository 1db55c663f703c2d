"""How times and durations are written in what people read on stderr: the hold warnings, the
progress lines and the summary. Shared so that all three say a time the same way."""

import time


def clock_time(epoch):
    """12:00:01, local time."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def duration(seconds):
    """3s, 2m05s, 3h00m: short, for one line."""
    if seconds == float("inf"):
        return "forever"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def hms(seconds):
    """H:MM:SS."""
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"
