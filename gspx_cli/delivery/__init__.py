"""Delivery: the sinks that take plans (print for --dry-run, HTTP workers), retries, the gate, the rate
limit, the daily budget, the PX client. The only stage that speaks HTTP.
May import the base modules, mapping and state."""
