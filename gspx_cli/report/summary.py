"""The end-of-run summary on stderr: a table of events by type and outcome, then the run's facts as
aligned `name  value` lines; on a narrow console, `name: value` lines for both.

A fact is data, (name, value), made by one of the *_facts sections below and printed by
print_facts: a new fact is one more `yield` in the section it belongs to (or a new section listed
in summary_facts). An empty name continues the fact above.
"""

from itertools import chain

from gspx_cli.report import costs
from gspx_cli.state.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, OUTCOMES, SKIPPED
from gspx_cli.report.timetext import duration

# rich (~30 ms to import) is imported by the functions that print: summary_facts alone never loads it.

NARROW_COLUMNS = 60  # below this the summary table would cut its headers ("ty…"): key: value lines instead
FACT_NAME_WIDTH = 14  # the value column of the aligned facts
TOP_REASONS_SHOWN = 5  # failure reasons in the summary; --report lists up to report_json.REPORT_REASONS
# why a run stopped early (--report `stopped`) -> the summary's words
STOPS = {"SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM", "SIGHUP": "SIGHUP (hang-up)",
         "auth": "Gainsight PX refusing the API key", "outage": "Gainsight PX staying unavailable (delivery.max_outage)",
         "output": "an output that could not be written",
         "budget": "the day's request budget (--daily-budget) being spent",
         "replaced": "an input that is not what the checkpoint recorded"}


# -- printing ------------------------------------------------------------------------------------

def print_summary(console, result, *, dry, elapsed, failed_output=None, checkpoint=None):
    """The closing summary on the rich console: events by type x outcome, then the run's facts."""
    narrow = console.width < NARROW_COLUMNS
    title = "gspx summary" + (" (dry run)" if dry else "")
    stats = result.stats
    columns, rows = outcome_columns(stats, dry), type_rows(stats)
    if narrow:
        _print_line(console, title)
        print_facts(console, row_facts(columns, rows), narrow)
    else:
        print_table(console, title, columns, rows, stats.outcomes)
    facts = summary_facts(result, dry=dry, elapsed=elapsed, failed_output=failed_output, checkpoint=checkpoint)
    print_facts(console, facts, narrow)


def print_table(console, title, columns, rows, totals):
    """The table of events: a row per type, a column per outcome; the `totals` row in bold."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("type")
    for _, label in columns:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    for name, counts, total in rows:
        table.add_row(name, *(f"{counts[o]:,}" for o, _ in columns), f"{total:,}",
                      style="bold" if counts is totals else None)
    console.print(table)


def print_facts(console, facts, narrow):
    """Facts as aligned lines, never wrapped (logs keep them whole); narrow: `name: value`, wrapped at words."""
    from rich.text import Text

    for name, value in facts:
        if not narrow:
            _print_line(console, f"{name:<{FACT_NAME_WIDTH}}{value}")
        elif name:
            console.print(Text(f"{name}: {value}"), soft_wrap=False)
        else:
            console.print(Text(f"  {value.strip()}"), soft_wrap=False)


def _print_line(console, text):
    from rich.text import Text

    console.print(Text(text), soft_wrap=True)


# -- the table's data ----------------------------------------------------------------------------

def outcome_columns(stats, dry):
    """(outcome, label) of the table's columns; "not sent" only when some were."""
    labels = {DELIVERED: "would send" if dry else "delivered", SKIPPED: "skipped", INVALID: "invalid",
              FAILED: "failed", INTERRUPTED: "not sent"}
    return [(o, labels[o]) for o in OUTCOMES if o != INTERRUPTED or stats.outcomes[o]]


def type_rows(stats):
    """(name, counts by outcome, total) for each event type, then "all" (counts: stats.outcomes)."""
    rows = [(etype, stats.by_type[etype], sum(stats.by_type[etype].values())) for etype in sorted(stats.by_type)]
    rows.append(("all", stats.outcomes, stats.read))
    return rows


def row_facts(columns, rows):
    """The table as facts, for a console too narrow for it."""
    return [(name, ", ".join(f"{counts[o]:,} {label}" for o, label in columns) + f" ({total:,} in all)")
            for name, counts, total in rows]


# -- the facts -----------------------------------------------------------------------------------

def summary_facts(result, *, dry, elapsed, failed_output=None, checkpoint=None):
    """(name, value) lines of the summary, in order; an empty name continues the line above."""
    return list(chain(
        _event_facts(result, dry),
        () if dry else _request_facts(result.requests),
        _speed_facts(result, dry, elapsed),
        _skip_facts(result.stats),
        _pruning_facts(result.read),
        _settled_facts(result.read),
        costs.summary_facts(result, dry),
        _failure_facts(result.stats),
        _warning_facts(result.stats),
        _output_facts(result, failed_output, checkpoint, dry),
    ))


def _event_facts(result, dry):
    stats = result.stats
    out = stats.outcomes
    tally = (f"{stats.read:,} read: {out[DELIVERED]:,} {'would send' if dry else 'delivered'}, "
             f"{out[SKIPPED]:,} skipped, {stats.failed:,} failed")
    if out[INTERRUPTED]:
        tally += f", {out[INTERRUPTED]:,} not sent"
    yield "events", tally


def _request_facts(reqs):
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(reqs.by_kind.items())) or "none"
    yield "requests", f"{reqs.total:,} ({kinds})"
    yield "retries", f"{reqs.retries:,}"
    if reqs.holds:
        yield "held", (f"{duration(reqs.held_seconds)} in {reqs.holds:,} "
                       f"{'hold' if reqs.holds == 1 else 'holds'} (PX unavailable, or Retry-After)")
    if reqs.possible_duplicates:
        yield "duplicates?", (f"{reqs.possible_duplicates:,} custom events were re-sent after an answer "
                              "that never came: PX may hold them twice (see docs/delivery.md, Delivery guarantees)")


def _speed_facts(result, dry, elapsed):
    rate = result.stats.read / elapsed if elapsed > 0 else 0.0
    yield "elapsed", f"{elapsed:.1f}s"
    throughput = f"{rate:,.0f} events/s"
    if not dry and elapsed > 0:
        throughput += f", {result.requests.total / elapsed:,.0f} requests/s"
    yield "throughput", throughput


def _skip_facts(stats):
    if stats.skip_reasons:
        yield "skipped", "; ".join(f"{r} ({n:,})" for r, n in stats.skip_reasons.most_common(3))


def _pruning_facts(read):
    folders, objects = getattr(read, "pruned_folders", 0), getattr(read, "pruned_objects", 0)
    if folders or objects:
        yield "passed over", (f"{folders:,} {'folder' if folders == 1 else 'folders'} and {objects:,} "
                              f"{'file' if objects == 1 else 'files'} dated outside the time window (not read)")


def _settled_facts(read):
    settled = getattr(read, "settled_files", 0)
    if settled:
        yield "already done", (f"{settled:,} {'file' if settled == 1 else 'files'} settled by an earlier run "
                               "with this checkpoint, unchanged since (not read again)")


def _failure_facts(stats):
    if not stats.reasons:
        return
    for i, (r, e) in enumerate(stats.top_reasons(TOP_REASONS_SHOWN)):
        yield "" if i else "top failures", f"{e.count:>5,}  {r} (e.g. {e.example})"
    if len(stats.reasons) > TOP_REASONS_SHOWN:
        yield "", f"       ... and {len(stats.reasons) - TOP_REASONS_SHOWN:,} other reasons (all in --report)"


def _warning_facts(stats):
    if stats.warnings:
        yield "warnings", f"{stats.warnings:,}"


def _output_facts(result, failed_output, checkpoint, dry):
    """Where the failed output and checkpoint are, why the run stopped, and where the unsent events went."""
    broken = result.stop_error if result.stop_reason == "output" else None  # the output that failed
    broken_option = getattr(broken, "option", None)
    if failed_output:
        yield from _failed_output_facts(result.stats, failed_output, checkpoint, broken_option)
    if checkpoint and not dry:
        if broken_option == "--checkpoint":
            yield "checkpoint", (f"{checkpoint} (could not be saved: a rerun resends what was settled "
                                 "since its last save)")
        else:
            yield "checkpoint", f"{checkpoint} (rerun with the same --checkpoint to skip what is done)"
    unsent = result.stats.outcomes[INTERRUPTED]
    if result.stop_reason is not None:
        broken_what = f"{broken_option} {broken.path}" if broken_option and broken.path else broken_option
        why = f"{broken_what} that could not be written" if broken_option else STOPS[result.stop_reason]
        yield "stopped", f"by {why}; {unsent:,} events read but not sent"
    if unsent:
        yield "not sent", _unsent_advice(result.stats, failed_output, checkpoint, broken_option == "--failed-output")


def _failed_output_facts(stats, failed_output, checkpoint, broken_option):
    if broken_option == "--failed-output":
        later = ("they are not settled: a rerun with the same --checkpoint sends them" if checkpoint
                 else "the error lines above name them")
        yield "failed output", (f"{failed_output} (writing failed after {stats.failed_output_lines:,} lines; "
                                f"the events it could not take are in no file: {later})")
    elif stats.failed_output_lines:
        failed_lines = stats.failed_output_lines - stats.unsent_saved
        parts = [f"{failed_lines:,} failed: fix them"] if failed_lines else []
        if stats.unsent_saved:
            parts.append(f"{stats.unsent_saved:,} not sent: as they are")
        yield "failed output", (f"{failed_output} ({stats.failed_output_lines:,} lines appended, "
                                f"{', '.join(parts)}; then `gspx send ... {failed_output}`)")
    else:
        yield "failed output", f"{failed_output} (nothing appended)"
    if stats.not_copied:
        yield "", (f"{len(stats.not_copied):,} failed lines longer than --max-line-bytes were not copied "
                   f"(e.g. {stats.not_copied[0]}); see --report failed_output_not_copied")


def _unsent_advice(stats, failed_output, checkpoint, failed_output_broken=False):
    """Where the events read but not sent are, and how to send them."""
    parts = []
    saved = stats.unsent_saved
    if saved:
        parts.append(f"{saved:,} appended to {failed_output}: send them with `gspx send {failed_output}`")
    rest = stats.outcomes[INTERRUPTED] - saved
    if rest and checkpoint:
        parts.append(f"{rest:,} are sent by a rerun with the same --checkpoint")
    elif rest and failed_output_broken:
        parts.append(f"{rest:,} are in no file: --failed-output could not be written")
    elif rest:
        parts.append(f"{rest:,} are in no file: use --failed-output (or --checkpoint for files) to keep them")
    return "; ".join(parts)
