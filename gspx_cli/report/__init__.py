"""Report: what a run shows a person: dry-run lines, progress, warnings, the summary and --report JSON.
Knows counts and plans, not HTTP.
May import the base modules, mapping and state."""
