"""Command line: options -> Settings -> coordinator.run -> exit code. The only module that imports click."""

import os
import signal
import sys

import click

from gspx_cli import __version__, config, coordinator
from gspx_cli.read import dating, remote
from gspx_cli.report import reporter as report
from gspx_cli.state.outputs import CheckpointLock, check_writable
from gspx_cli.errors import STOP_EXIT_CODES, ConfigError, ExitCode, GspxError, OutputError
from gspx_cli.mapping.filters import EventFilter
from gspx_cli.state.ledger import Ledger
from gspx_cli.read.reader import DEFAULT_MAX_LINE_BYTES
from gspx_cli.read.shapes import set_error_dumps

SEND_EPILOG = """\b
Examples:
  # a pipeline: pick identify events out of a dump with jq
  jq -c 'select(.type == "identify")' dump.ndjson | gspx send -c gspx.yaml
\b
  # a gzip backfill that can be resumed, with failures kept for replay
  gspx send -c gspx.yaml --checkpoint backfill.ckpt --failed-output failed.ndjson events-*.ndjson.gz
\b
  # inspect what would be sent, without an API key or a connection
  gspx send --dry-run -c gspx.yaml events.ndjson | jq '.requests[]?.json'
"""


class _Cli(click.Group):
    """Turns gspx exceptions into exit codes in one place (STYLE habit 2)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GspxError as exc:
            click.echo(f"gspx: error: {exc}", err=True)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            # a dry run keeps Python's own Ctrl-C handling; click would say "Aborted!" and exit 1
            click.echo("gspx: interrupted", err=True)
            ctx.exit(int(ExitCode.SIGINT))
        except BrokenPipeError:
            # the reader of stdout went away (e.g. `| head`): stop quietly
            sys.stdout = open(os.devnull, "w")
            ctx.exit(int(ExitCode.EVENTS_FAILED))


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gspx")
def cli():
    """Forward RudderStack events (NDJSON) to Gainsight PX."""


class _InputPath(click.Path):
    """A FILE argument: a path that exists, "-", or an object-store URL (checked once the store is reached)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and remote.is_url(value):
            return value
        return super().convert(value, param, ctx)


def _config_option(f):
    return click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                        help="YAML config [default: $GSPX_CONFIG, else ./gspx.yaml].")(f)


def _time_option(ctx, param, value):
    """--since / --until: ISO 8601 text -> epoch milliseconds; a usage error (exit 2) when unreadable."""
    if value is None:
        return None
    from gspx_cli.mapping.rules import to_epoch_ms

    ms = to_epoch_ms(value) if value.strip() else None
    if ms is None:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2024-01-31 or 2024-01-31T12:00:00Z)")
    return ms


def _duration_option(ctx, param, value):
    """--lateness: "7d", "36h" -> milliseconds; a usage error (exit 2) when unreadable."""
    if value is None:
        return None
    ms = dating.parse_duration(value)
    if ms is None:
        raise click.BadParameter(f"{value!r} is not a duration (e.g. 7d, 36h, 90m, 1d12h)")
    return ms


@cli.command(epilog=SEND_EPILOG, short_help="Send events from NDJSON files or stdin to Gainsight PX.")
@click.argument("files", nargs=-1, type=_InputPath(exists=True, dir_okay=True, allow_dash=True))
@_config_option
@click.option("--dry-run", is_flag=True, help="Send nothing, need no API key; print the requests as JSON lines.")
@click.option("--failed-output", type=click.Path(dir_okay=False),
              help="Append every failed event here, ready to be fixed and sent again.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Remember how far each input is settled; a rerun skips what is done (one run at a time; "
              "a replaced or truncated input is refused).")
@click.option("--concurrency", type=int, help="Requests in flight at once (delivery.concurrency).")
@click.option("--rate-limit", type=float, help="Requests per second at most (delivery.rate_limit).")
@click.option("--max-retries", type=int, help="Retries of one request (delivery.max_retries).")
@click.option("--max-outage", type=float, metavar="SECONDS",
              help="Hold events this long while PX is unavailable, then stop with exit 4 (delivery.max_outage).")
@click.option("--upsert", type=click.Choice(list(config.UPSERT_ORDERS)),
              help="How a user or account is written (delivery.upsert): update-first where objects exist "
                   "(the PX tag runs), create-first to fill an empty subscription; for a backfill of old "
                   "archives, update-only never creates (an event of a user or account not in PX is skipped: "
                   "deleted people stay deleted) and create-only never overwrites (an object that exists "
                   "keeps its newer traits; a group attaches only users or accounts this run created).")
@click.option("--no-dedupe", is_flag=True, help="Send an event even when its messageId was already delivered.")
@click.option("--daily-budget", type=int, metavar="N",
              help="At most N requests per UTC day, then stop with exit 5 (delivery.daily_budget); shared by "
                   "the runs of one --checkpoint.")
@click.option("--since", metavar="TIME", callback=_time_option,
              help="Keep only events at or after TIME (ISO 8601; the event's timestamp, else originalTimestamp, "
                   "else receivedAt); the rest are skipped as filtered.")
@click.option("--until", metavar="TIME", callback=_time_option, help="Keep only events before TIME (ISO 8601).")
@click.option("--lateness", metavar="DURATION", callback=_duration_option,
              help="With --until: archives dated (by their folder or file name) more than DURATION after it "
                   "are not read (e.g. 7d, 36h); events archived that late are missed.")
@click.option("--type", "types", multiple=True, metavar="T",
              help="Keep only events of this type (repeatable: --type identify --type track).")
@click.option("--event", "event_names", multiple=True, metavar="PATTERN",
              help="Keep only track events whose name matches this shell-style pattern (repeatable); other "
                   "types are not affected.")
@click.option("--error-dumps", is_flag=True, expose_value=False, callback=lambda ctx, param, on: set_error_dumps(on),
              help="Also read RudderStack processor-error dump jobs (rudder-proc-err-logs); without it such "
                   "a file is refused.")
@click.option("--endpoint-url", metavar="URL", envvar="AWS_ENDPOINT_URL",
              help="An S3-compatible endpoint for s3:// inputs (MinIO, Ceph, a local server) [default: "
                   "$AWS_ENDPOINT_URL, else AWS].")
@click.option("--limit-api-for-group", is_flag=True, default=None, help="The fewer-calls group flow.")
@click.option("--max-line-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_LINE_BYTES, show_default=True,
              help="The longest input line accepted.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write the run's counts as JSON to this file (keys in docs/send.md).")
@click.option("--progress/--no-progress", default=None, help="Force the progress display on stderr on or off "
              "[default: on when stderr is a terminal].")
@click.option("-q", "--quiet", is_flag=True, help="Errors only on stderr: no progress, warnings or summary.")
@click.option("-v", "--verbose", is_flag=True,
              help="One line per request on stderr: method, URL, status, milliseconds, attempt.")
@click.pass_context
def send(ctx, files, config_path, dry_run, failed_output, checkpoint, concurrency, rate_limit, max_retries,
         max_outage, upsert, no_dedupe, daily_budget, since, until, lateness, types, event_names, endpoint_url,
         limit_api_for_group, max_line_bytes, report_path, progress, quiet, verbose):
    """Send RudderStack events from FILEs (NDJSON, .gz, directories, s3:// and gs:// prefixes; '-' or
    none: stdin) to Gainsight PX.

    Data (the --dry-run lines) goes to stdout; progress, errors and the summary go to stderr.
    Exit status: 0 all delivered or skipped, 1 some events failed or an output (--failed-output,
    --checkpoint, --report) could not be written, 2 usage or config error,
    3 API key refused, 4 PX unavailable too long, 5 the day's request budget is spent,
    129/130/143 interrupted (SIGHUP/SIGINT/SIGTERM).
    """
    if quiet and verbose:
        raise click.UsageError("-q/--quiet and -v/--verbose cannot be used together")
    if lateness is not None and until is None:
        raise click.UsageError("--lateness needs --until: it says how long after --until events may still "
                               "have been archived")
    overrides = {"concurrency": concurrency, "rate_limit": rate_limit, "max_retries": max_retries,
                 "max_outage": max_outage, "upsert": upsert, "daily_budget": daily_budget,
                 "limit_api_for_group": limit_api_for_group}
    settings = config.load_settings(config_path, overrides=overrides, require_api_key=not dry_run)
    reporter = report.Reporter(verbose=verbose, quiet=quiet, progress=progress)
    for warning in settings.warnings:
        reporter.warning(None, warning)  # config warnings name their file
    if dry_run:
        checkpoint = None  # a dry run settles nothing: the checkpoint is neither read nor written
    # Every output is checked before any input is read or any request made (CLI.md "Outputs").
    if failed_output:
        check_writable(failed_output, "--failed-output")
    if checkpoint:
        check_writable(checkpoint, "--checkpoint", replaced=True)
    urls = [path for path in files if remote.is_url(path)]
    if urls:  # credentials, bucket and rights: said in one line before anything is sent
        remote.set_endpoint_url(endpoint_url)
        remote.check(urls)
    lock = CheckpointLock(checkpoint).acquire() if checkpoint else None
    try:
        ledger = Ledger(failed_output=failed_output, checkpoint=checkpoint)
        if ledger.checkpoint is not None:
            for note in ledger.checkpoint.check_inputs(list(files)):
                reporter.note(note)
        if report_path:  # checked now, written at the end (in one piece: never left empty)
            check_writable(report_path, "--report")
        if (not files or "-" in files) and sys.stdin.isatty():
            reporter.note("reading events from standard input (one JSON object per line; Ctrl-D ends)")
        event_filter = EventFilter(since=since, until=until, types=types, events=event_names)
        window = dating.Window(since=since, until=until, lateness=lateness)
        code = _run(settings, files, reporter, ledger, report_path, dry_run=dry_run, max_line_bytes=max_line_bytes,
                    dedupe=not no_dedupe, event_filter=event_filter, window=window)
    finally:
        if lock is not None:
            lock.release()
    ctx.exit(int(code))


def _run(settings, files, reporter, ledger, report_path, *, dry_run, max_line_bytes, dedupe, event_filter, window):
    """The run, the summary and the report; returns the exit code."""
    failed_output = ledger.failed_output
    checkpoint = ledger.checkpoint.path if ledger.checkpoint is not None else None
    stop = coordinator.StopFlag()
    restore = coordinator.install_signal_handlers(stop)
    try:  # our handlers stay until the summary and report are out: a Ctrl-C there is no KeyboardInterrupt
        result = coordinator.run(settings, list(files), reporter=reporter, ledger=ledger, dry_run=dry_run,
                                 max_line_bytes=max_line_bytes, stop=stop, dedupe=dedupe, event_filter=event_filter,
                                 window=window)
        code = exit_code(result)
        if result.stop_error is not None:
            reporter.error(str(result.stop_error))
        reporter.summary(result, failed_output=failed_output, checkpoint=checkpoint)
        if report_path:
            try:
                report.write_report(report_path, result, exit_code=code, failed_output=failed_output,
                                    checkpoint=checkpoint, dry_run=dry_run, elapsed=reporter.elapsed(result.stats))
            except OSError as exc:  # disk full at the very end: said plainly, and never exit 0
                reporter.error(str(OutputError(report_path, "--report", exc)))
                if code == ExitCode.OK:
                    code = STOP_EXIT_CODES["output"]
    finally:
        restore()
    return code


def exit_code(result):
    """CLI.md exit status from what the run did."""
    if result.stop_reason is not None:
        return STOP_EXIT_CODES[result.stop_reason]
    return ExitCode.EVENTS_FAILED if result.stats.failed else ExitCode.OK


@cli.command()
@_config_option
@click.option("--online", is_flag=True, help="Also make one read request to confirm PX accepts the key.")
@click.pass_context
def check(ctx, config_path, online):
    """Validate the config and show the settings in effect."""
    settings = config.load_settings(config_path, require_api_key=online)
    reporter = report.Reporter()
    for warning in settings.warnings:
        reporter.warning(None, warning)  # config warnings name their file
    reporter.settings_table(config.describe_settings(settings))
    if not settings.api_key:
        reporter.note("note: no api_key (set GSPX_API_KEY): fine for --dry-run, needed to send")
    if online:
        from gspx_cli.delivery.sender import check_key

        check_key(settings)
        reporter.note(f"ok: Gainsight PX accepted the API key at {settings.base_url}")
    ctx.exit(int(ExitCode.OK))


@cli.command()
@click.argument("path", default="gspx.yaml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path, force):
    """Write a commented starter config (default ./gspx.yaml)."""
    try:
        # O_EXCL refuses an existing file atomically; 0o600 because the file may later hold api_key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL), 0o600)
    except FileExistsError:
        raise ConfigError("already exists; use --force to overwrite it", file=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror}", file=path) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(config.STARTER_CONFIG)
    click.echo(f"wrote {path}. Put your product tag key in it, and the API key in GSPX_API_KEY "
               f"(export GSPX_API_KEY=...), not in the file. Then: gspx check -c {path}", err=True)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0 picks a free port.")
@click.option("--latency-ms", type=click.IntRange(min=0), default=0, help="Delay added to every answer.")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of requests answered --fail-status (503), at random.")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of requests dropped unanswered (connection closed), at random.")
@click.option("--fail-first", type=click.IntRange(min=0), default=0, metavar="K",
              help="Answer the first K attempts of every distinct request with --fail-status: a flaky PX.")
@click.option("--drop-first", type=click.IntRange(min=0), default=0, metavar="K",
              help="Drop the first K attempts of every distinct request (before any --fail-first).")
@click.option("--fail-status", type=click.IntRange(400, 599), default=503, show_default=True,
              help="The status of --fail-first and --fail-rate failures (502 comes as a proxy's HTML page).")
@click.option("--seed", type=int, help="Seed of the random failures, for a repeatable rehearsal.")
@click.option("--api-key", help="Accept only this key (others get 401); default: any key.")
@click.option("--outage-after", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Rehearse an outage: from this many seconds after start, answer every request with "
                   "--outage-status.")
@click.option("--outage-for", type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long the outage lasts [default: until stopped].")
@click.option("--outage-status", type=click.IntRange(400, 599), default=503, show_default=True,
              help="The status answered during the outage (e.g. 429).")
@click.option("--outage-retry-after", metavar="VALUE",
              help="A Retry-After header sent during the outage (seconds or an HTTP date).")
def sandbox(port, latency_ms, fail_rate, drop_rate, fail_first, drop_first, fail_status, seed, api_key, outage_after,
            outage_for, outage_status, outage_retry_after):
    """Run a local stand-in of the Gainsight PX API, for rehearsals."""
    from gspx_cli import sandbox as sb

    def _interrupt(signum, frame):
        raise KeyboardInterrupt  # `kill` stops it like Ctrl-C: with the summary of what it received

    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C, or `kill -INT` even when started with `&` from a script (which would ignore SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sb.serve(port=port, latency_ms=latency_ms, fail_rate=fail_rate, api_key=api_key, out=sys.stderr,
             outage_after=outage_after, outage_for=outage_for, outage_status=outage_status,
             outage_retry_after=outage_retry_after, fail_first=fail_first, fail_status=fail_status,
             drop_first=drop_first, drop_rate=drop_rate, seed=seed)


def main():
    """Console-script entry point."""
    if sys.stderr is None:
        # started with stderr closed (`2>&-`): click's usage errors and rich's console would fall back to
        # stdout where they find no stderr; stdout is data only, so what is meant for people goes nowhere
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (the run's life)
    cli(prog_name="gspx")
