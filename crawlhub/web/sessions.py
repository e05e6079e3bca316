"""Dashboard sign-in: a signed, expiring session cookie and the CSRF token it carries.

The cookie holds `{"exp", "csrf"}` (expiry, a random CSRF token) and who signed in: `uid`
and `ver` for a user (their id and session version: a password change or a disable bumps
the version, which ends the sessions signed before), or `tok` for a configured API token
(a fingerprint of it). It is signed with HMAC-SHA256 under a key derived from the
configured API tokens, so every web process verifies it without shared state, and removing a
token signs out every session. No password or token is ever stored in the cookie.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from starlette.requests import HTTPConnection

COOKIE = "crawlhub_session"
STATE_KEY = "session"  # where the access check keeps a request's verified session
CSRF_FIELD = "csrf"  # the hidden form field; htmx requests send the X-CSRF-Token header
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    """A signed-in browser."""

    expires: float
    csrf: str
    user_id: str | None = None  # None: signed in with a configured token
    version: int = 0


def fingerprint(token: str) -> str:
    """A short, one-way name of an API token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _key(tokens: tuple[str, ...]) -> bytes:
    material = "\n".join(sorted(tokens)).encode()
    return hmac.new(material, b"crawlhub dashboard session v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def matching_token(tokens: tuple[str, ...], given: str) -> str | None:
    """The configured token equal to `given` (compared in constant time), or None."""
    found = None
    for token in tokens:
        if hmac.compare_digest(token.encode(), given.encode()):
            found = token
    return found


def issue(tokens: tuple[str, ...], hours: float, *, token: str | None = None,
          user_id: str | None = None, version: int = 0) -> str:  # fmt: skip
    """A cookie value for a browser that signed in as a user, or with `token` (one of
    `tokens`)."""
    payload: dict[str, object] = {
        "exp": time.time() + hours * 3600,
        "csrf": secrets.token_urlsafe(24),
    }
    if user_id is not None:
        payload |= {"uid": user_id, "ver": version}
    else:
        assert token is not None
        payload["tok"] = fingerprint(token)
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signature = _b64(hmac.new(_key(tokens), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def verify(tokens: tuple[str, ...], cookie: str | None) -> Session | None:
    """The session a cookie proves, None when it is missing, forged, expired or its token
    is no longer configured."""
    if not cookie or not tokens or cookie.count(".") != 1:
        return None
    body, signature = cookie.split(".")
    expected = _b64(hmac.new(_key(tokens), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        payload = json.loads(_unb64(body))
        expires, csrf = float(payload["exp"]), str(payload["csrf"])
        if "uid" in payload:
            user_id, version = str(payload["uid"]), int(payload["ver"])
        else:
            user_id, version, tok = None, 0, str(payload["tok"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < time.time():
        return None
    if user_id is None and tok not in {fingerprint(t) for t in tokens}:
        return None
    return Session(expires, csrf, user_id, version)


def session_of(conn: HTTPConnection) -> Session | None:
    """The session the access check verified for a dashboard request, if any."""
    found: Session | None = conn.scope.get("state", {}).get(STATE_KEY)
    return found


def csrf_ok(session: Session, given: str | None) -> bool:
    """Whether a form (or htmx request) carried this session's CSRF token."""
    return bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode())


def seal(tokens: tuple[str, ...], data: dict[str, object], seconds: float) -> str:
    """Data in a signed, expiring cookie value (what a sign-in through a provider keeps
    between its two legs); readable by the browser, so nothing secret goes in."""
    body = _b64(json.dumps({"exp": time.time() + seconds, "data": data},
                           separators=(",", ":")).encode())  # fmt: skip
    signature = _b64(hmac.new(_key(tokens), b"seal:" + body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def unseal(tokens: tuple[str, ...], value: str | None) -> dict[str, object] | None:
    """What `seal` kept, None when it is missing, forged or expired."""
    if not value or not tokens or value.count(".") != 1:
        return None
    body, signature = value.split(".")
    expected = _b64(hmac.new(_key(tokens), b"seal:" + body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        payload = json.loads(_unb64(body))
        expires, data = float(payload["exp"]), payload["data"]
    except (ValueError, KeyError, TypeError):
        return None
    return data if expires >= time.time() and isinstance(data, dict) else None
