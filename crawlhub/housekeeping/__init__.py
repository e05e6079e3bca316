"""The ticker's housekeeping: the sweep of lost messages, the reaper of silent runs, alert
deliveries, Dramatiq's maintenance, and the data lifecycle (retention)."""
