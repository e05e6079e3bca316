"""Cron evaluation, the schedule service and the ticker's steps (fire, sweep, reap)."""
