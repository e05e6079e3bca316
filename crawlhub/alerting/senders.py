"""Sending one alert to one channel: generic webhook, Slack, DingTalk, Feishu, WeCom, e-mail."""

import base64
import hashlib
import hmac
import http
import json
import logging
import smtplib
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from crawlhub.alerting import targets
from crawlhub.config import Settings
from crawlhub.errors import CrawlhubError

TIMEOUT_S = 10.0
SIGNATURE_HEADER = "X-CrawlHub-Signature"
TIMESTAMP_HEADER = "X-CrawlHub-Timestamp"
DELIVERY_HEADER = "X-CrawlHub-Delivery"
KINDS = ("webhook", "slack", "dingtalk", "feishu", "wecom", "email")
MAX_ADDRESSES = 3  # addresses of one host tried in turn when connecting fails
MAX_REASON = 120  # characters of a chat service's own error message kept in a reason
MAX_REPLY_BYTES = 64 * 1024  # of a reply, read for the error code chat services put there


class DeliveryFailed(CrawlhubError):
    """A channel did not accept a notification (worth another attempt later)."""

    code = "delivery_failed"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class DeliveryRefused(DeliveryFailed):
    """A channel's target breaks the channel rules (form, SSRF): no attempt can succeed."""

    code = "delivery_refused"


@dataclass(frozen=True)
class Reply:
    """What a target answered: its status and the start of its body (never shown to anyone)."""

    status_code: int
    head: bytes


class RedactedUrls(logging.Filter):
    """httpx logs each request's URL at INFO, and a chat channel's URL is its credential:
    whatever the log level, the path and query never reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = targets.scrub(record.getMessage()), ()
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, RedactedUrls) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(RedactedUrls())


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
) -> int | None:  # fmt: skip
    """Deliver a payload and return the HTTP status (None for e-mail); DeliveryFailed with a
    short reason (never the target's reply body, never the URL's path or query) when the
    channel refuses or is down, DeliveryRefused when the target breaks the channel rules.
    The delivery id (the same on every attempt) lets a receiver drop a repeat."""
    if kind == "email":
        try:
            targets.check_email(target)
        except ValueError as exc:
            raise DeliveryRefused(f"refused: {exc}") from None
        _email(target, payload, settings)
        return None
    body, url, headers = _http_request(kind, target, secret, payload)
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = delivery_id
    reply = _post(url, body, headers, targets.Rules.of(settings))
    if reply.status_code >= 300:
        redirect = " (redirects are not followed)" if reply.status_code < 400 else ""
        raise DeliveryFailed(
            f"HTTP {reply.status_code} {_phrase(reply.status_code)}{redirect}",
            status_code=reply.status_code,
        )
    _check_chat_reply(kind, reply)
    return reply.status_code


def _post(url: str, body: bytes, headers: dict[str, str], rules: targets.Rules) -> Reply:
    """POST to an address that passed the SSRF rules, and only to such an address."""
    # The host is resolved here and every address checked; the request then names a checked
    # IP in its URL, while the Host header and the TLS server name (SNI, which is also the
    # name the certificate is verified against) keep the channel's host. Letting httpx
    # resolve the name again could get another answer (DNS rebinding). Redirects are not
    # followed, and proxies from the environment are not used (a proxy resolves names itself).
    # httpx's exception texts may quote the URL: they are scrubbed, and not chained.
    try:
        target = targets.parse_url(url)
    except ValueError as exc:
        raise DeliveryRefused(f"refused: {exc}") from None
    try:
        addresses = targets.reachable_addresses(target, rules)
    except ValueError as exc:
        raise DeliveryRefused(f"refused: {exc}") from None
    except OSError as exc:
        raise DeliveryFailed(f"cannot resolve {target.host}: {exc.strerror or exc}") from None
    headers = {**headers, "Host": target.netloc}
    extensions = {"sni_hostname": target.host} if target.ip is None else {}
    error = "no address"
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=TIMEOUT_S) as client:
        for ip in addresses[:MAX_ADDRESSES]:
            pinned = httpx.URL(url).copy_with(host=str(ip))
            try:
                with client.stream("POST", pinned, content=body, headers=headers,
                                   extensions=extensions) as response:  # fmt: skip
                    return Reply(response.status_code, _head_of(response))
            except httpx.ConnectError as exc:  # this address is down: try the next one
                error = f"{type(exc).__name__}: {targets.scrub(str(exc), url)}"
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise DeliveryFailed(
                    f"{type(exc).__name__}: {targets.scrub(str(exc), url)}"
                ) from None
    raise DeliveryFailed(error)


def _head_of(response: httpx.Response) -> bytes:
    """The start of a reply, read for at most TIMEOUT_S: a target that streams without end
    holds up neither the worker nor its memory."""
    deadline = time.monotonic() + TIMEOUT_S
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= MAX_REPLY_BYTES or time.monotonic() > deadline:
            break
    return head[:MAX_REPLY_BYTES]


def _phrase(status: int) -> str:
    # The standard phrase, not the one on the status line: the target writes that one.
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


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
        raise DeliveryRefused(f"unknown channel kind '{kind[:40]}'")
    return json.dumps(body, ensure_ascii=False).encode(), url, headers


def _check_chat_reply(kind: str, answer: Reply) -> None:
    # DingTalk, Feishu and WeCom answer 200 with an error code in the body.
    if kind not in ("dingtalk", "feishu", "wecom"):
        return
    try:
        reply = json.loads(answer.head)
    except ValueError:  # also a reply cut at MAX_REPLY_BYTES: none of theirs is that long
        return
    if not isinstance(reply, dict):
        return
    code = reply.get("errcode", reply.get("code", reply.get("StatusCode", 0)))
    if code not in (0, None):
        # The service's own short error ("keywords not in content") is the reason worth
        # showing; it is cut short and stripped of control characters like any reply text.
        message = reply.get("errmsg") or reply.get("msg") or reply.get("StatusMessage") or ""
        raise DeliveryFailed(
            f"{kind} refused the message: {_short(str(code))} {_short(str(message))}",
            status_code=answer.status_code,
        )


def _short(text: str) -> str:
    printable = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    return targets.scrub(printable[:MAX_REASON])


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
