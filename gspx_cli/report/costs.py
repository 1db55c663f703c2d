"""What a run's requests cost and what it saved (issue 17): the summary's lines and --report's keys."""

from gspx_cli.state.dedupe import DUPLICATE
from gspx_cli.mapping.estimate import days_text, seconds_text


def upsert_advice(reqs, order):
    """{"order", "would_save"} when the other upsert order would have made fewer requests, else None.

    Upserts of objects not known beforehand: update-first costs 1 for each found and 2 for each
    created, create-first the reverse (MAPPING.md "Upserts")."""
    if order not in ("update-first", "create-first"):  # update-only / create-only are chosen for safety
        return None
    found, created = reqs.upserts_found, reqs.upserts_created
    saving = created - found if order == "update-first" else found - created
    if saving <= 0:
        return None
    return {"order": "create-first" if order == "update-first" else "update-first", "would_save": saving}


def report_keys(result, dry_run):
    """The --report keys of issue 17 (added, none renamed)."""
    reqs, delivery = result.requests, result.delivery
    keys = {
        "requests_saved": {"unchanged_writes": reqs.saved_unchanged, "known_objects": reqs.saved_known},
        "duplicates_skipped": result.stats.skip_reasons.get(DUPLICATE, 0),
        "upsert": delivery.upsert if delivery else None,
        "upsert_advice": None if dry_run or delivery is None else upsert_advice(reqs, delivery.upsert),
        "estimate": None,
        "daily_budget": None,
        # update-only / create-only: the writes they did not make, by why (MAPPING.md "Upserts")
        "writes_left_out": dict(reqs.left_out.most_common()),
    }
    if result.estimate is not None and delivery is not None:
        keys["estimate"] = result.estimate.figures(delivery.rate_limit, delivery.daily_budget)
    budget = result.budget
    if budget is not None and budget.day is not None:
        keys["daily_budget"] = {"limit": budget.limit, "day": budget.day, "used": budget.used}
    return keys


def summary_facts(result, dry_run):
    """(name, value) lines for the summary: requests saved, the other upsert order, the estimate."""
    reqs, delivery, facts = result.requests, result.delivery, []
    saved = reqs.saved_unchanged + reqs.saved_known
    if saved and not dry_run:
        parts = [f"{n:,} {what}" for n, what in ((reqs.saved_unchanged, "unchanged writes"),
                                                  (reqs.saved_known, "lookups or creates of known objects")) if n]
        facts.append(("saved", f"{saved:,} requests not made: {', '.join(parts)}"))
    left = sum(reqs.left_out.values())
    if left and not dry_run:
        why = ", ".join(f"{n:,} {reason}" for reason, n in reqs.left_out.most_common())
        facts.append(("left out", f"{left:,} writes not made: {why}"))
    advice = None if dry_run or delivery is None else upsert_advice(reqs, delivery.upsert)
    if advice:
        facts.append(("upsert", f"--upsert {advice['order']} would have saved {advice['would_save']:,} requests "
                                f"({reqs.upserts_created:,} objects created, {reqs.upserts_found:,} found)"))
    budget = result.budget
    if budget is not None and budget.limit is not None and budget.day is not None:
        facts.append(("budget", f"{budget.used:,} of {budget.limit:,} requests used on {budget.day} (UTC)"))
    if result.estimate is not None and delivery is not None:
        facts.extend(_estimate_facts(result.estimate.figures(delivery.rate_limit, delivery.daily_budget)))
    return facts


def _estimate_facts(figures):
    fewest, most = figures["fewest"], figures["most"]
    kinds = sorted(set(fewest["by_kind"]) | set(most["by_kind"]))
    by_kind = ", ".join(f"{k} {_span(fewest['by_kind'].get(k, 0), most['by_kind'].get(k, 0))}" for k in kinds)
    per_day = f"{figures['requests_per_day']:,} requests/day ({figures['per_day_from']})"
    return [
        ("estimate", f"{_span(fewest['requests'], most['requests'])} requests live ({by_kind or 'none'})"),
        ("", f"{_span_text(fewest['seconds'], most['seconds'], seconds_text)} at {figures['rate_limit']:g} "
             f"requests/s; {_span_text(fewest['days'], most['days'], days_text)} of quota at {per_day}"),
    ]


def _span(low, high):
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def _span_text(low, high, text):
    return text(low) if text(low) == text(high) else f"{text(low)} to {text(high)}"
