"""A spider's Quality page: its rules (edit, learn from a run), its runs' verdicts, each
field's statistics across runs with its rule's band, and schema drift."""

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.errors import BadRequest, InvalidInput
from crawlhub.quality.rules import QualityRules, levels, parse
from crawlhub.services import quality
from crawlhub.services.quality import RunQuality
from crawlhub.ui import charts
from crawlhub.ui.forms import field
from crawlhub.ui.rendering import action, back, page, render
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx, parse_json

FIELDS_CHARTED = 30


def _coverage_chart(name: str, runs: list[RunQuality], rules: QualityRules | None) -> Any:
    """A field's coverage per run, each bar coloured by its run's verdict, with the field's
    coverage rule as lines."""
    values = []
    for run in runs:
        stats = run.quality.get("fields", {}).get(name)
        share = stats["coverage"] if stats else 0.0
        title = f"{run.created_at:%Y-%m-%d %H:%M} UTC: {share:.1%} ({run.verdict or 'no verdict'})"
        values.append((run.created_at, title, share))
    bound = rules.coverage.get(name) if rules is not None else None
    bands = [(v, level) for level, v in levels(bound)] if bound is not None else []
    chart = charts.simple(values, "items", f"{name}: coverage", "", top=1.0, bands=bands)
    for bar, run in zip(chart.bars, runs, strict=True):
        bar.series = run.verdict or "none"
    return chart


def quality_page(request: Request, session: Session, status: int = 200, *,
                 draft: str | None = None, errors: dict[str, str] | None = None,
                 learnt_from: str | None = None) -> Response:  # fmt: skip
    ref = request.path_params["ref"]
    context = ctx(request)
    found = quality.rules_of(context, ref)
    runs = quality.history(context, ref)
    latest = runs[-1].quality.get("fields", {}) if runs else {}
    named = list((found.rules or {}).get("coverage", {}))
    charted = [*named, *(k for k in latest if k not in named)][:FIELDS_CHARTED]
    shown = json.dumps(found.rules, indent=2, ensure_ascii=False) if found.rules else ""
    try:
        rules = parse(found.rules) if found.rules else None
    except InvalidInput:  # stored by an older release: shown, not charted
        rules = None
    return render(
        request, session, "quality.html", status,
        spider=found.spider, found=found, runs=runs, latest=latest,
        charts=[_coverage_chart(name, runs, rules) for name in charted],
        drift=quality.drift(runs), draft=shown if draft is None else draft,
        errors=errors or {}, learnt_from=learnt_from,
        learnable=[r for r in reversed(runs) if r.status == "completed" and r.items],
    )  # fmt: skip


@page
def show_quality(request: Request, session: Session) -> Response:
    """The spider's Quality page."""
    return quality_page(request, session)


@action
def save_rules(request: Request, session: Session, form: FormData) -> Response:
    """Save the spider's own rules from the editor (empty: none of its own)."""
    ref, text = request.path_params["ref"], field(form, "rules").strip()
    try:
        rules = parse_json(text, "rules") if text else None
        quality.set_rules(ctx(request), ref, rules)
    except (BadRequest, InvalidInput) as exc:
        return quality_page(request, session, 422, draft=text, errors={"rules": exc.message})
    said = "Rules saved: they apply from the next run." if rules else "The spider's own rules " \
        "are cleared: its version's apply, if it has any."  # fmt: skip
    return back(f"/spiders/{ref}/quality", said)


@action
def learn(request: Request, session: Session, form: FormData) -> Response:
    """Rules learnt from a run, in the editor (not saved)."""
    run = field(form, "run")
    rules = quality.learn_from(ctx(request), request.path_params["ref"], run)
    return quality_page(request, session, draft=json.dumps(rules, indent=2), learnt_from=run)
