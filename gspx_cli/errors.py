"""Exit codes and the exceptions that carry them; cli.py is the one place that turns them into exits."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit statuses fixed by CLI.md."""

    OK = 0
    EVENTS_FAILED = 1
    CONFIG = 2
    AUTH = 3
    OUTAGE = 4
    BUDGET = 5
    SIGHUP = 129
    SIGINT = 130
    SIGTERM = 143


# why a run stopped early (--report `stopped`) -> its exit status (CLI.md "Exit status")
STOP_EXIT_CODES = {
    "SIGINT": ExitCode.SIGINT,
    "SIGTERM": ExitCode.SIGTERM,
    "SIGHUP": ExitCode.SIGHUP,
    "auth": ExitCode.AUTH,
    "outage": ExitCode.OUTAGE,
    "budget": ExitCode.BUDGET,
    "output": ExitCode.EVENTS_FAILED,
    "replaced": ExitCode.CONFIG,
}


class GspxError(Exception):
    """Base for errors that end a run; each knows its exit code."""

    exit_code = ExitCode.EVENTS_FAILED


class ConfigError(GspxError):
    """Usage or configuration error: nothing was sent (exit 2)."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message, *, file=None, key=None):
        self.file = file
        self.key = key
        where = ""
        if file and key:
            where = f"{file}: {key}: "
        elif file:
            where = f"{file}: "
        elif key:
            where = f"{key}: "
        super().__init__(f"{where}{message}")


class ReplacedInputError(ConfigError):
    """A file found in a directory or an object store is not the one the checkpoint recorded: the run
    stops there (exit 2), as a replaced FILE is refused before the run."""


class AuthRejectedError(GspxError):
    """Gainsight PX refused the API key (401/403): the run stops (exit 3)."""

    exit_code = ExitCode.AUTH

    def __init__(self, status, base_url, message=""):
        self.status = status
        self.base_url = base_url
        detail = f": {message}" if message else ""
        super().__init__(
            f"Gainsight PX refused the API key (HTTP {status}) at {base_url}{detail}. "
            "Check api_key / GSPX_API_KEY and data_center / base_url."
        )


class OutageError(GspxError):
    """Gainsight PX stayed unavailable for longer than delivery.max_outage: the run stops (exit 4)."""

    exit_code = ExitCode.OUTAGE


class BudgetSpentError(GspxError):
    """The day's request budget (--daily-budget) is spent: the run stops (exit 5)."""

    exit_code = ExitCode.BUDGET

    def __init__(self, limit, used, day, seconds_left):
        self.limit = limit
        self.day = day
        hours, minutes = int(seconds_left // 3600), int(seconds_left % 3600 // 60)
        super().__init__(
            f"the day's request budget is spent: {used:,} requests on {day} (UTC), "
            f"--daily-budget / delivery.daily_budget {limit:,}. The next UTC day starts at 00:00 UTC, in "
            f"{hours}h{minutes:02d}m: run the same command again then, with the same --checkpoint, to go on"
        )


class OutputError(GspxError):
    """An output (--failed-output, --checkpoint, --report) could not be written: the run stops."""

    exit_code = ExitCode.EVENTS_FAILED

    def __init__(self, path, option, exc):
        self.path = path
        self.option = option
        reason = getattr(exc, "strerror", None) or str(exc)
        where = f"{option} {path}" if path else option
        super().__init__(f"cannot write {where}: {reason}")


class Interrupted(Exception):
    """The run is stopping (a signal, a refused key, an outage): no request starts, and the event in
    flight is left unsettled so that a resume sends it whole."""


class PxError(Exception):
    """A non-2xx answer (or a transport failure, status None) from Gainsight PX."""

    def __init__(self, status, message):
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}" if status else message)
