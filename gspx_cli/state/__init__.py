"""State: the run's memory: the ledger of outcomes, the checkpoint (SQLite store) and delivered messageIds.
Knows inputs by name (read), never HTTP or plans.
May import the base modules and read."""
