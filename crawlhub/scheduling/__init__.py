"""Cron evaluation, the schedule service and the ticker's firing of schedules."""
