"""Models of a spider's data quality rules."""

import uuid
from typing import Any

from pydantic import BaseModel, Field

from crawlhub.web.schemas.common import Strict


class QualityOut(BaseModel):
    spider: str
    project_id: uuid.UUID
    rules: dict[str, Any] | None = Field(description="the rules in force (null: none)")
    source: str | None = Field(description='"spider" (set here), "version N" (its crawlhub.toml)')
    own: dict[str, Any] | None = Field(description="the spider's own rules, set here")
    shipped: dict[str, Any] | None = Field(
        description="the rules its current version's crawlhub.toml gives it"
    )


class QualitySet(Strict):
    rules: dict[str, Any] | None = Field(
        description="the spider's own rules (null: none, its version's apply); see "
        "docs/guide/quality.md"
    )


class LearnRequest(Strict):
    task_id: str = Field(min_length=1, max_length=128, description="a completed run's id")


class Learnt(BaseModel):
    rules: dict[str, Any] = Field(description="rules to edit, then set with PUT …/quality")
