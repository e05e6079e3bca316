"""Sending one alert to one channel: generic webhook, Slack, DingTalk, Feishu, WeCom, e-mail."""

import base64
import hashlib
import hmac
import json
import smtplib
import time
import urllib.parse
from email.message import EmailMessage
from typing import Any

import httpx

from crawlhub.config import Settings
from crawlhub.errors import CrawlhubError

TIMEOUT_S = 10.0
SIGNATURE_HEADER = "X-CrawlHub-Signature"
TIMESTAMP_HEADER = "X-CrawlHub-Timestamp"
DELIVERY_HEADER = "X-CrawlHub-Delivery"
KINDS = ("webhook", "slack", "dingtalk", "feishu", "wecom", "email")


class DeliveryFailed(CrawlhubError):
    """A channel did not accept a notification."""

    code = "delivery_failed"


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>` with the channel secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def text_of(payload: dict[str, Any]) -> str:
    """A one-paragraph human text of an alert for chat channels and e-mail."""
    repeats = f" (x{payload['count']})" if payload.get("count", 1) > 1 else ""
    spider = f" [{payload['spider']}]" if payload.get("spider") else ""
    return f"CrawlHub {payload['level']}{spider} {payload['type']}{repeats}: {payload['message']}"


def send(
    kind: str, target: str, secret: str | None, payload: dict[str, Any], settings: Settings,
    *, delivery_id: str | None = None,
) -> None:  # fmt: skip
    """Deliver a payload; DeliveryFailed with the reason when the channel refuses or is down.
    The delivery id (the same on every attempt) lets a receiver drop a repeat."""
    if kind == "email":
        _email(target, payload, settings)
        return
    body, url, headers = _http_request(kind, target, secret, payload)
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = delivery_id
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_S)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:300]}")
    _check_chat_reply(kind, response)


def _http_request(
    kind: str, target: str, secret: str | None, payload: dict[str, Any]
) -> tuple[bytes, str, dict[str, str]]:
    headers = {"Content-Type": "application/json", "User-Agent": "CrawlHub"}
    text = text_of(payload)
    url = target
    body: dict[str, Any]
    if kind == "webhook":
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        if secret:
            headers[SIGNATURE_HEADER] = sign_webhook(secret, timestamp, raw)
        return raw, url, headers
    if kind == "slack":
        body = {"text": text}
    elif kind == "dingtalk":
        body = {"msgtype": "text", "text": {"content": text}}
        if secret:  # DingTalk: HMAC-SHA256(secret, "<ms>\n<secret>"), base64, in the query string
            stamp = str(int(time.time() * 1000))
            digest = hmac.new(
                secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256
            ).digest()
            sign = urllib.parse.quote_plus(base64.b64encode(digest))
            url += ("&" if "?" in url else "?") + f"timestamp={stamp}&sign={sign}"
    elif kind == "feishu":
        body = {"msg_type": "text", "content": {"text": text}}
        if secret:  # Feishu/Lark: HMAC-SHA256 keyed by "<s>\n<secret>" over nothing, base64
            stamp = str(int(time.time()))
            digest = hmac.new(f"{stamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
            body.update({"timestamp": stamp, "sign": base64.b64encode(digest).decode()})
    elif kind == "wecom":
        body = {"msgtype": "text", "text": {"content": text}}
    else:
        raise DeliveryFailed(f"unknown channel kind '{kind}'")
    return json.dumps(body, ensure_ascii=False).encode(), url, headers


def _check_chat_reply(kind: str, response: httpx.Response) -> None:
    # DingTalk, Feishu and WeCom answer 200 with an error code in the body.
    if kind not in ("dingtalk", "feishu", "wecom"):
        return
    try:
        reply = response.json()
    except ValueError:
        return
    code = reply.get("errcode", reply.get("code", reply.get("StatusCode", 0)))
    if code not in (0, None):
        message = reply.get("errmsg") or reply.get("msg") or reply.get("StatusMessage")
        raise DeliveryFailed(f"{kind} refused the message: {code} {message}")


def _email(target: str, payload: dict[str, Any], settings: Settings) -> None:
    if not settings.smtp_host:
        raise DeliveryFailed("CRAWLHUB_SMTP_HOST is not set")
    message = EmailMessage()
    message["Subject"] = f"[CrawlHub] {payload['level']}: {payload['type']}"
    message["From"] = settings.smtp_from
    message["To"] = target
    message.set_content(
        text_of(payload) + "\n\n" + json.dumps(payload, indent=2, ensure_ascii=False)
    )
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user and settings.smtp_password:
                smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"SMTP: {exc}") from exc
