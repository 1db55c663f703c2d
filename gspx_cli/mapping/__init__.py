"""Mapping: one event + the config -> a Plan of PX requests (pure: no I/O, no clock), plus the filters
that keep or leave out events and the cost estimate of plans. Knows nothing of reading or delivery.
May import only the base modules (gspx_cli.errors, gspx_cli.jsonio)."""
