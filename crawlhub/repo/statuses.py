"""A task's statuses, grouped by what they mean to the code that moves tasks along (and to
the faces that show them)."""

STATUSES = ("pending", "running", "retrying", "completed", "failed", "cancelled", "skipped")
CLAIMABLE = ("pending", "retrying")  # a worker may start an attempt
ACTIVE = ("pending", "running", "retrying")  # not over yet
FINISHED = ("completed", "failed", "cancelled", "skipped")  # final
