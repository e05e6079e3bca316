"""Single sign-on with OpenID Connect (Authlib): the authorization code flow with PKCE
against CRAWLHUB_OIDC_ISSUER. Its state, nonce and code verifier wait in a signed cookie
between the two legs; the provider's ID token is checked (signature, issuer, audience,
nonce, expiry) before the user it names gets a session."""

import html
from functools import lru_cache
from typing import Any

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from crawlhub.config import Settings
from crawlhub.errors import NotFound
from crawlhub.services import accounts
from crawlhub.services.accounts import SignInRefused
from crawlhub.ui.pages.signin import safe_next, set_session
from crawlhub.ui.rendering import render
from crawlhub.web.sessions import seal, unseal
from crawlhub.web.validation import ctx

FLOW_COOKIE = "crawlhub_sso"
FLOW_SECONDS = 600  # the time a person has at the provider


@lru_cache(maxsize=4)
def _provider(issuer: str, client_id: str, secret: str) -> StarletteOAuth2App:
    oauth = OAuth()
    client: StarletteOAuth2App = oauth.register(
        "crawlhub", client_id=client_id, client_secret=secret,
        server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
    )  # fmt: skip
    return client


def provider(settings: Settings) -> StarletteOAuth2App:
    if not settings.sso or settings.oidc_client_secret is None:
        raise NotFound("single sign-on is not configured (CRAWLHUB_OIDC_ISSUER)")
    return _provider(str(settings.oidc_issuer), str(settings.oidc_client_id),
                     settings.oidc_client_secret.get_secret_value())  # fmt: skip


async def start(request: Request) -> Response:
    """Off to the provider, remembering where the user was going."""
    context = ctx(request)
    client = provider(context.settings)
    request.scope["session"] = {}
    back = str(request.url_for("sso_callback"))
    redirect: Response = await client.authorize_redirect(request, back)
    flow = {"session": request.scope["session"],
            "next": safe_next(request.query_params.get("next"))}  # fmt: skip
    # Lax, not Strict: the provider sends the browser back here from its own site.
    redirect.set_cookie(FLOW_COOKIE, seal(context.tokens, flow, FLOW_SECONDS),
                        max_age=FLOW_SECONDS, path="/login/sso", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")  # fmt: skip
    return redirect


async def callback(request: Request) -> Response:
    """Back from the provider: check its answer, sign the user it names in."""
    context = ctx(request)
    client = provider(context.settings)
    flow = unseal(context.tokens, request.cookies.get(FLOW_COOKIE))
    if flow is None:
        return _refused(request, "this sign-in took too long or did not start here: try again")
    session: Any = flow.get("session")
    request.scope["session"] = dict(session) if isinstance(session, dict) else {}
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as exc:
        return _refused(request, f"the provider refused: {exc.description or exc.error}")
    claims = token.get("userinfo") or {}
    subject = str(claims.get("sub") or "")
    if not subject:
        return _refused(request, "the provider's answer names no user")
    hint = str(claims.get("preferred_username") or str(claims.get("email") or "").split("@")[0]
               or subject)  # fmt: skip
    try:
        issuer = str(context.settings.oidc_issuer)
        user = await run_in_threadpool(accounts.sso_user, context, issuer, subject, hint)
    except SignInRefused as exc:
        return _refused(request, exc.message)
    target = safe_next(str(flow.get("next") or "/"))
    # A page, not a redirect: the session cookie is SameSite=Strict, and a redirect chain
    # that began at the provider's site would not carry it to the first page.
    response = HTMLResponse(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={html.escape(target)}">'
        f"<title>Signed in · CrawlHub</title></head><body><p>Signed in as "
        f'{html.escape(user.username)}: <a href="{html.escape(target)}">continue</a>.</p>'
        "</body></html>"
    )
    set_session(request, response, user_id=str(user.id), version=user.session_version)
    response.delete_cookie(FLOW_COOKIE, path="/login/sso")
    return response


def _refused(request: Request, message: str) -> Response:
    response = render(request, None, "login.html", 401, next="/", error=message)
    response.delete_cookie(FLOW_COOKIE, path="/login/sso")
    return response
