"""Models of alerts, their deliveries, and notification channels."""

import uuid
from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from crawlhub.alerting.channels import check_target
from crawlhub.web.schemas.common import Out, Page, PageQuery, Strict

Level = Literal["info", "warning", "error"]
ChannelKind = Literal["webhook", "slack", "dingtalk", "feishu", "wecom", "email"]


class AlertOut(Out):
    id: uuid.UUID
    type: str
    level: Level
    message: str
    spider_id: uuid.UUID | None
    task_id: uuid.UUID | None
    is_read: bool
    count: int
    created_at: datetime
    last_seen_at: datetime


class AlertListQuery(PageQuery):
    level: Level | None = None
    is_read: bool | None = None
    spider_id: str | None = Field(None, max_length=64, description="spider id or name")


class AlertPage(Page[AlertOut]):
    pass


class ChannelFields(Strict):
    """Fields a channel can be created or patched with."""

    kind: ChannelKind | None = None
    target: str | None = Field(None, min_length=3, max_length=2048)
    secret: str | None = Field(None, max_length=512)
    min_level: Level | None = None
    spider_id: str | None = Field(None, max_length=64, description="spider id or name")
    enabled: bool | None = None


class ChannelCreate(ChannelFields):
    """Body of POST /api/channels."""

    kind: ChannelKind
    target: str = Field(min_length=3, max_length=2048)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is not None:  # an invalid kind has its own error
            check_target(kind, value)
        return value


class ChannelPatch(ChannelFields):
    """Body of PATCH /api/channels/{id}; absent fields stay; null clears secret or spider."""

    @model_validator(mode="after")
    def _no_explicit_nulls(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in ("secret", "spider_id"):
                raise ValueError(f"{name} must not be null")
        return self


class ChannelOut(Out):
    """A channel; its secret is never returned, only whether it has one."""

    id: uuid.UUID
    kind: ChannelKind
    target: str
    has_secret: bool
    min_level: Level
    spider_id: uuid.UUID | None
    enabled: bool
    created_at: datetime


class ChannelPage(Page[ChannelOut]):
    pass


class DeliveryOut(Out):
    channel_id: uuid.UUID
    status: str
    attempts: int
    last_error: str | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]


class ChannelTest(Out):
    """The result of a test notification; the target's reply body is never included."""

    delivered: bool
    status_code: int | None = Field(description="the target's HTTP status; null for e-mail")
    error: str | None = Field(description="a short reason when not delivered")
