"""The dashboard's route table: pages, form actions, the live log stream, static files."""

from pathlib import Path

from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from crawlhub.ui.pages import (
    account,
    alerts,
    data,
    overview,
    projects,
    queues,
    runs,
    schedules,
    signin,
    spiders,
)

STATIC = Path(__file__).parent / "static"
POST = ["POST"]

ROUTES = [
    Route("/login", signin.login_form, methods=["GET"]),
    Route("/login", signin.login, methods=POST),
    Route("/logout", signin.logout, methods=POST),
    Route("/", overview.overview, methods=["GET"]),
    Route("/overview/running", overview.running, methods=["GET"]),
    Route("/spiders", spiders.list_spiders, methods=["GET"]),
    Route("/spiders", spiders.create_spider, methods=POST),
    Route("/spiders/{ref}", spiders.show_spider, methods=["GET"]),
    Route("/spiders/{ref}/settings", spiders.update_spider, methods=POST),
    Route("/spiders/{ref}/versions", spiders.upload_version, methods=POST),
    Route("/spiders/{ref}/run", spiders.run_now, methods=POST),
    Route("/projects", projects.list_projects, methods=["GET"]),
    Route("/projects", projects.deploy, methods=POST),
    Route("/projects/{ref}", projects.show_project, methods=["GET"]),
    Route("/projects/{ref}/state", projects.project_state, methods=["GET"]),
    Route("/projects/{ref}/versions", projects.upload_version, methods=POST),
    Route("/projects/{ref}/delete", projects.confirm_delete, methods=["GET"]),
    Route("/projects/{ref}/delete", projects.delete_project, methods=POST),
    Route("/runs", runs.list_runs, methods=["GET"]),
    Route("/runs/{id}", runs.show_run, methods=["GET"]),
    Route("/runs/{id}/facts", runs.run_facts, methods=["GET"]),
    Route("/runs/{id}/cancel", runs.cancel_run, methods=POST),
    Route("/runs/{id}/again", runs.run_again, methods=POST),
    Route("/runs/{id}/log/stream", runs.log_stream, methods=["GET"]),
    Route("/export/{fmt}", runs.export, methods=["GET"]),
    Route("/schedules", schedules.list_schedules, methods=["GET"]),
    Route("/schedules", schedules.create_schedule, methods=POST),
    Route("/schedules/new", schedules.new_schedule, methods=["GET"]),
    Route("/schedules/preview", schedules.preview, methods=["GET"]),
    Route("/schedules/{id}", schedules.edit_schedule, methods=["GET"]),
    Route("/schedules/{id}", schedules.update_schedule, methods=POST),
    Route("/schedules/{id}/enabled", schedules.pause_or_resume, methods=POST),
    Route("/data", data.list_items, methods=["GET"]),
    Route("/alerts", alerts.list_alerts, methods=["GET"]),
    Route("/alerts/read-all", alerts.mark_all_read, methods=POST),
    Route("/alerts/{id}/read", alerts.mark_read, methods=POST),
    Route("/channels", alerts.create_channel, methods=POST),
    Route("/channels/{id}", alerts.update_channel, methods=POST),
    Route("/channels/{id}/test", alerts.test_channel, methods=POST),
    Route("/channels/{id}/delete", alerts.delete_channel, methods=POST),
    Route("/queues", queues.list_queues, methods=["GET"]),
    Route("/queues/{name}/dead-letters/{message_id}/requeue", queues.requeue, methods=POST),
    Route("/queues/{name}/purge", queues.confirm_purge, methods=["GET"]),
    Route("/queues/{name}/purge", queues.purge, methods=POST),
    Route("/account", account.show_account, methods=["GET"]),
    Route("/account/password", account.change_password, methods=POST),
    Route("/account/tokens", account.create_token, methods=POST),
    Route("/account/tokens/{id}/revoke", account.revoke_token, methods=POST),
    Route("/users", account.list_users, methods=["GET"]),
    Route("/users", account.create_user, methods=POST),
    Route("/users/{ref}", account.update_user, methods=POST),
    Route("/audit", account.list_audit, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
]
