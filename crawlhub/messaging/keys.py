"""Every queue name and Redis key CrawlHub uses, in one place."""

# Dramatiq queues. The Redis broker keeps each as `dramatiq:<queue>` (a list of
# message ids) plus `dramatiq:<queue>.msgs` (a hash of id -> message), its delay
# queue `dramatiq:<queue>.DQ`, and its dead-letter set `dramatiq:<queue>.XQ`.
RUNS_QUEUE = "crawlhub.runs"
ALERTS_QUEUE = "crawlhub.alerts"
BUILDS_QUEUE = "crawlhub.builds"
QUEUES = (RUNS_QUEUE, ALERTS_QUEUE, BUILDS_QUEUE)

# Actor names: messages name their actor, so these outlive deploys like the queue names.
RUN_ACTOR = "run"  # executes one attempt of a task (crawlhub/actors/run.py)
ALERT_ACTOR = "alert"  # delivers alerts; takes dead-lettered run messages (actors/alert.py)
PREPARE_ACTOR = "prepare"  # builds a new version's environment, lists its spiders (prepare.py)

# Dramatiq's Redis broker namespace (its default, spelled out so redis-cli users know it).
DRAMATIQ_NAMESPACE = "dramatiq"

# Live log events of one task: a Redis stream, capped and expired after the run.
TASK_LOG_STREAM = "crawlhub:task:{task_id}:log"

# How many run messages the broker holds per task (ready, delayed, or being worked on): kept
# beside Dramatiq's queues by the broker's middleware, so the sweep looks up the tasks it
# checks instead of reading every queued message (crawlhub/messaging/broker.py).
QUEUED_RUNS = "crawlhub:queued-runs"

# Wake-up list of a queue: whoever enqueues pushes a token, idle workers wait on it with
# BLPOP instead of sleeping between polls (crawlhub/messaging/broker.py).
QUEUE_WAKE_LIST = "crawlhub:wake:{queue}"
