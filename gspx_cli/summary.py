"""The end-of-run summary's facts (events, requests, time, reasons, outputs, why it stopped), as
(name, value) lines; Reporter prints them under the table of events by type and outcome."""

import time

from gspx_cli import costs
from gspx_cli.ledger import DELIVERED, INTERRUPTED, SKIPPED

TOP_REASONS_SHOWN = 5  # failure reasons in the summary; --report lists up to report_json.REPORT_REASONS
# why a run stopped early (--report `stopped`) -> the summary's words
STOPS = {"SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM", "SIGHUP": "SIGHUP (hang-up)",
         "auth": "Gainsight PX refusing the API key", "outage": "Gainsight PX staying unavailable (delivery.max_outage)",
         "output": "an output that could not be written",
         "budget": "the day's request budget (--daily-budget) being spent"}


def summary_facts(result, *, dry, elapsed, failed_output=None, checkpoint=None):
    """(name, value) lines of the summary, in order; an empty name continues the line above."""
    stats, reqs = result.stats, result.requests
    out = stats.outcomes
    sent_label = "would send" if dry else "delivered"
    facts = []  # (name, value); an empty name continues the fact above

    def fact(name, value):
        facts.append((name, value))

    tally = f"{stats.read:,} read: {out[DELIVERED]:,} {sent_label}, {out[SKIPPED]:,} skipped, {stats.failed:,} failed"
    if out[INTERRUPTED]:
        tally += f", {out[INTERRUPTED]:,} not sent"
    fact("events", tally)
    if not dry:
        kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(reqs.by_kind.items())) or "none"
        fact("requests", f"{reqs.total:,} ({kinds})")
        fact("retries", f"{reqs.retries:,}")
        if reqs.holds:
            fact("held", f"{_duration(reqs.held_seconds)} in {reqs.holds:,} "
                         f"{'hold' if reqs.holds == 1 else 'holds'} (PX unavailable, or Retry-After)")
        if reqs.possible_duplicates:
            fact("duplicates?", f"{reqs.possible_duplicates:,} custom events were re-sent after an answer "
                                "that never came: PX may hold them twice (see README, Delivery guarantees)")
    rate = stats.read / elapsed if elapsed > 0 else 0.0
    fact("elapsed", f"{elapsed:.1f}s")
    throughput = f"{rate:,.0f} events/s"
    if not dry and elapsed > 0:
        throughput += f", {reqs.total / elapsed:,.0f} requests/s"
    fact("throughput", throughput)
    if stats.skip_reasons:
        fact("skipped", "; ".join(f"{r} ({n:,})" for r, n in stats.skip_reasons.most_common(3)))
    facts.extend(costs.summary_facts(result, dry))
    if stats.reasons:
        reasons = stats.top_reasons(TOP_REASONS_SHOWN)
        for i, (r, e) in enumerate(reasons):
            fact("" if i else "top failures", f"{e.count:>5,}  {r} (e.g. {e.example})")
        if len(stats.reasons) > TOP_REASONS_SHOWN:
            fact("", f"       ... and {len(stats.reasons) - TOP_REASONS_SHOWN:,} other reasons (all in --report)")
    if stats.warnings:
        fact("warnings", f"{stats.warnings:,}")
    facts.extend(_output_facts(result, failed_output, checkpoint, dry))
    return facts



def _output_facts(result, failed_output, checkpoint, dry):
    """Where the failed output and checkpoint are, why the run stopped, and where the unsent events went."""
    stats = result.stats
    out = stats.outcomes
    facts = []

    def fact(name, value):
        facts.append((name, value))

    broken = result.stop_error if result.stop_reason == "output" else None  # the output that failed
    broken_option = getattr(broken, "option", None)
    if failed_output:
        failed_lines = stats.failed_output_lines - stats.unsent_saved
        if broken_option == "--failed-output":
            later = ("they are not settled: a rerun with the same --checkpoint sends them" if checkpoint
                     else "the error lines above name them")
            fact("failed output", f"{failed_output} (writing failed after {stats.failed_output_lines:,} lines; "
                                  f"the events it could not take are in no file: {later})")
        elif stats.failed_output_lines:
            parts = [f"{failed_lines:,} failed: fix them"] if failed_lines else []
            if stats.unsent_saved:
                parts.append(f"{stats.unsent_saved:,} not sent: as they are")
            fact("failed output", f"{failed_output} ({stats.failed_output_lines:,} lines appended, "
                                  f"{', '.join(parts)}; then `gspx send ... {failed_output}`)")
        else:
            fact("failed output", f"{failed_output} (nothing appended)")
        if stats.not_copied:
            fact("", f"{len(stats.not_copied):,} failed lines longer than --max-line-bytes were not copied "
                     f"(e.g. {stats.not_copied[0]}); see --report failed_output_not_copied")
    if checkpoint and not dry:
        if broken_option == "--checkpoint":
            fact("checkpoint", f"{checkpoint} (could not be saved: a rerun resends what was settled "
                               "since its last save)")
        else:
            fact("checkpoint", f"{checkpoint} (rerun with the same --checkpoint to skip what is done)")
    if result.stop_reason is not None:
        broken_what = f"{broken_option} {broken.path}" if broken_option and broken.path else broken_option
        why = f"{broken_what} that could not be written" if broken_option else STOPS[result.stop_reason]
        fact("stopped", f"by {why}; {out[INTERRUPTED]:,} events read but not sent")
    if out[INTERRUPTED]:
        fact("not sent", _unsent_advice(stats, failed_output, checkpoint, broken_option == "--failed-output"))
    return facts

def _clock_time(epoch):
    """12:00:01, local time."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _duration(seconds):
    """3s, 2m05s, 3h00m: short, for one line."""
    if seconds == float("inf"):
        return "forever"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


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
