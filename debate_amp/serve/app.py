"""The web app of ``debate-amp serve``: real people act as H (DESIGN.md section 3, ``docs/humans.md``).

Two modes, one app:

- **Questions** (``/``): the questions a trainer posted to the label store (``human.kind: web``). A person gives a
  name once (a cookie), then sees the question the store leases to them (:meth:`LabelStore.claim`), rendered from
  the view the trainer stored with it (:func:`~debate_amp.agents.humans.people.person_view`): the posed kind and
  instruction, the task's rendering of the question, the debate's arguments with their sides, the workspace, the
  model's draft as the default answer. An answer is turned into the stored reply by
  :func:`~debate_amp.agents.humans.people.compose_reply` and committed by :meth:`LabelStore.answer`; only then does
  the page (redirected after the post) read it back from the store and say "stored". Skip sends the question to the
  back of the queue.
- **Judges** (``/judge``, with a :class:`~debate_amp.serve.judgments.JudgeSession`): saved debates, each first as
  its question alone (the person's own answer and confidence, committed), then with its arguments (the winner and a
  confidence, committed).

Every string from a model, a transcript or a person goes through Jinja2's autoescape, and the pages carry a
Content-Security-Policy that allows no script at all. Nothing is loaded from outside (no CDN, no fonts; FastAPI's
docs pages, which load from a CDN, are off). Access: without a token only loopback clients, asking for a loopback
host name (no DNS rebinding), are served; with one, every request must carry it (``?token=`` once, after which a
cookie carries it, or the ``X-Debate-Amp-Token`` header). A form post from another origin is refused either way.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import DictLoader, Environment, StrictUndefined

from debate_amp.agents.humans.people import compose_reply
from debate_amp.agents.labels import LabelStore, PendingQuestion
from debate_amp.protocol import EVEN, ODD
from debate_amp.serve.judgments import CONFIDENCE_RANGE, JudgeSession, SavedDebate
from debate_amp.tasks.base import ANSWER_PREFIX

PERSON_COOKIE = "debate_amp_person"
TOKEN_COOKIE = "debate_amp_token"
TOKEN_HEADER = "x-debate-amp-token"
REFRESH_S = 2  # how often a page with nothing to do looks again
MAX_NAME = 40
LOCAL_HOST_NAMES = ("localhost", "localhost.")
NON_LOCAL = "forbidden: this server accepts local connections only; set --token to accept non-local connections"
NO_TOKEN = "forbidden: this server needs its token (open the URL it printed, with ?token=...)"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "same-origin",  # "no-referrer" would make a browser send "Origin: null" on our own posts
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

# ---------------------------------------------------------------------------------------------------------------
# Pages (Jinja2, autoescaped)

_TEMPLATES = {
    "base.html": """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{% if refresh %}<meta http-equiv="refresh" content="{{ refresh }}; url={{ refresh_url }}">{% endif %}
<title>{{ title }} - debate-amp</title>
<style>
body { font: 16px/1.45 system-ui, sans-serif; max-width: 52rem; margin: 1rem auto; padding: 0 1rem; color: #222; }
header { color: #555; border-bottom: 1px solid #ddd; padding-bottom: .4rem; margin-bottom: 1rem; }
.notice { padding: .5rem .8rem; border-radius: 4px; background: #e8f4e8; border: 1px solid #9c9; }
.notice.warn, .error { background: #fdf0e0; border: 1px solid #e0a050; padding: .5rem .8rem; border-radius: 4px; }
.question { font-size: 1.15rem; }
.instruction { font-weight: 600; }
.muted { color: #666; font-size: .9rem; }
table { border-collapse: collapse; margin: .5rem 0; }
td, th { border: 1px solid #ccc; padding: .15rem .6rem; text-align: center; font-family: ui-monospace, monospace; }
ol.arguments { padding-left: 0; list-style: none; }
ol.arguments li { margin: .3rem 0; padding: .3rem .6rem; border-left: 4px solid #88a; background: #f6f6fb; }
ol.arguments li.odd { border-left-color: #a86; background: #fbf8f4; }
ol.arguments li.asked { outline: 2px solid #c33; }
.side { font-weight: 600; margin-right: .5rem; }
.argument, code { font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-word; }
form { margin: .8rem 0; }
input[type=text] { font: inherit; padding: .25rem .4rem; min-width: 16rem; }
input[type=number] { font: inherit; width: 5rem; }
button { font: inherit; padding: .3rem .9rem; margin-right: .3rem; cursor: pointer; }
button.draft { font-weight: 700; }
fieldset { border: 1px solid #ddd; border-radius: 4px; }
</style></head>
<body><header><b>debate-amp</b> &middot; {{ title }}
{% if person %} &middot; you are <b id="person">{{ person }}</b>
(<a href="/name?{{ next_query }}">change</a>){% endif %}</header>
<main>
{% if notice %}<p class="notice {{ notice_kind }}" id="notice">{{ notice }}</p>{% endif %}
{% block main %}{% endblock %}
</main></body></html>
""",
    "name.html": """{% extends "base.html" %}{% block main %}
<form method="post" action="/name">
<p><label>Your name (stored with every answer you give):
<input type="text" name="name" value="{{ name }}" maxlength="{{ max_name }}" autofocus required></label></p>
<input type="hidden" name="next" value="{{ next }}">
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
<p><button type="submit">Continue</button></p>
</form>
{% endblock %}""",
    "question_view.html": """<p class="question" id="question">{{ q.text }}</p>
{% if q.table %}<table id="question-table"><tr>{% for h in q.table.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in q.table.rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
""",
    "arguments.html": """{% if arguments %}<h3>Arguments</h3>
<ol class="arguments" id="arguments">{% for a in arguments %}
<li class="{{ a.side }}{% if a.asked %} asked{% endif %}"><span class="side">{{ a.index }} &middot; {{ a.side }}</span>
<span class="argument">{{ a.text }}</span>{% if a.asked %} <span class="muted">(the argument asked about)</span>{% endif %}
</li>{% endfor %}</ol>{% endif %}
""",
    "question.html": """{% extends "base.html" %}{% block main %}
<p class="muted">{{ view.task }} &middot; {{ view.kind }} question{% if view.kind == "step" %}
(one step of the {{ view.goal_kind }} question: {{ view.goal_instruction }}){% endif %}</p>
<p class="instruction" id="instruction">{{ view.instruction }}</p>
{% with q = view.question %}{% include "question_view.html" %}{% endwith %}
{% include "arguments.html" %}
{% if view.workspace %}<h3>Answers to the subquestions so far</h3><ul id="workspace">
{% for w in view.workspace %}<li>#{{ loop.index }} = <code>{{ w }}</code></li>{% endfor %}</ul>{% endif %}
{% if error %}<p class="error" id="error">not stored: {{ error }}</p>{% endif %}
<form method="post" action="/answer" id="answer-form">
<input type="hidden" name="key" value="{{ key }}">
{% if view.choices %}<p>{% for c in view.choices %}
<button type="submit" name="answer" value="{{ c }}"{% if c == draft_choice %} class="draft"{% endif %}>{{ c }}</button>
{% endfor %}</p>
{% else %}<p><label>Your answer: <input type="text" name="answer" id="answer" value="{{ typed_answer }}"
autocomplete="off" autofocus></label> <button type="submit" id="submit">Submit</button></p>{% endif %}
{% if view.draft is not none %}<p class="muted">The model's draft{% if not view.choices %} (prefilled){% endif %}:
<code id="draft">{{ view.draft }}</code></p>{% endif %}
</form>
{% if view.kind == "step" %}<form method="post" action="/answer" id="ask-form"><fieldset>
<legend>or ask two subquestions (the second may use the first one's answer as #1)</legend>
<input type="hidden" name="key" value="{{ key }}">
<input type="text" name="ask1" value="{{ typed_ask1 }}" aria-label="first subquestion" autocomplete="off">
<input type="text" name="ask2" value="{{ typed_ask2 }}" aria-label="second subquestion" autocomplete="off">
<button type="submit" id="ask">Ask</button></fieldset></form>{% endif %}
<form method="post" action="/skip"><input type="hidden" name="key" value="{{ key }}">
<button type="submit" id="skip">Skip</button> <span class="muted">(someone else, or you later, gets it)</span></form>
{% endblock %}""",
    "empty.html": """{% extends "base.html" %}{% block main %}
<p id="empty">{{ message }}</p><p class="muted">This page looks again every {{ refresh }} seconds.</p>
{% endblock %}""",
    "judge_initial.html": """{% extends "base.html" %}{% block main %}
<p class="muted">debate {{ position }} of {{ total }} &middot; step 1 of 2: your own answer, before the debate</p>
{% with q = debate.view %}{% include "question_view.html" %}{% endwith %}
{% if error %}<p class="error" id="error">not stored: {{ error }}</p>{% endif %}
<form method="post" action="/judge/initial" id="initial-form">
<input type="hidden" name="debate" value="{{ index }}">
<p><label>Your answer: <input type="text" name="answer" id="initial-answer" value="{{ typed_answer }}"
autocomplete="off" autofocus required></label></p>
<p><label>Your confidence that it is right: <input type="number" name="confidence" id="initial-confidence"
min="{{ lo }}" max="{{ hi }}" step="1" value="{{ typed_confidence }}" required> %</label>
<span class="muted">({{ lo }} = a guess, {{ hi }} = certain)</span></p>
<p><button type="submit" id="initial-submit">Submit, then see the debate</button></p>
</form>{% endblock %}""",
    "judge_verdict.html": """{% extends "base.html" %}{% block main %}
<p class="muted">debate {{ position }} of {{ total }} &middot; step 2 of 2: who won?</p>
{% with q = debate.view %}{% include "question_view.html" %}{% endwith %}
<p class="muted">Your own answer: <code id="your-answer">{{ started.initial_answer }}</code>
({{ started.initial_confidence | round | int }}%)</p>
{% include "arguments.html" %}
<p class="instruction">{{ instruction }}</p>
{% if error %}<p class="error" id="error">not stored: {{ error }}</p>{% endif %}
<form method="post" action="/judge/verdict" id="verdict-form">
<input type="hidden" name="debate" value="{{ index }}">
<p><label>Your confidence in your verdict: <input type="number" name="confidence" id="verdict-confidence"
min="{{ lo }}" max="{{ hi }}" step="1" value="{{ typed_confidence }}" required> %</label></p>
<p><button type="submit" name="winner" value="even" id="winner-even">even won</button>
<button type="submit" name="winner" value="odd" id="winner-odd">odd won</button></p>
</form>{% endblock %}""",
}

_ENV = Environment(loader=DictLoader(_TEMPLATES), autoescape=True, undefined=StrictUndefined)


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page; every value in ``context`` is escaped where the template shows it."""
    for name in ("refresh", "notice", "person", "error"):
        context.setdefault(name, None)
    context.setdefault("notice_kind", "")
    return HTMLResponse(_ENV.get_template(template).render(**context), status_code=status_code)


def _arguments(arguments: list[str] | tuple[str, ...], asked: int | None = None) -> list[dict[str, Any]]:
    """Argument i belongs to the even side when i is even (it opened), to the odd side otherwise."""
    return [
        {"index": i, "side": EVEN if i % 2 == 0 else ODD, "text": text, "asked": i == asked}
        for i, text in enumerate(arguments)
    ]


def _draft_choice(view: dict[str, Any]) -> str | None:
    """The choice the model's draft makes (``even``, or ``ans even`` for a step), marked on its button; else None."""
    draft, choices = view.get("draft"), view.get("choices")
    if draft is None or not choices:
        return None
    value = draft.removeprefix(ANSWER_PREFIX) if view["kind"] == "step" else draft
    return value if value in choices else None


# ---------------------------------------------------------------------------------------------------------------
# Requests


def is_loopback(host: str | None) -> bool:
    """Is ``host`` (an address, or a host name without port) this machine's loopback?"""
    if host is None:
        return False
    if host.lower() in LOCAL_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name in a Host header: ``[::1]:8000`` -> ``[::1]``, ``localhost:8000`` -> ``localhost``."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def clean_name(name: str) -> str:
    """A person's name as stored with their answers (spaces collapsed); ValueError when empty, too long or not
    printable."""
    name = " ".join(name.split())
    if not name:
        raise ValueError("give a name")
    if len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"a name of at most {MAX_NAME} printable characters")
    return name


def person_of(request: Request) -> str | None:
    """The name in the person cookie, or None."""
    raw = request.cookies.get(PERSON_COOKIE)
    if not raw:
        return None
    try:
        return clean_name(unquote(raw))
    except ValueError:
        return None


async def form_of(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what a page's form posts) as a dict; the last value of a
    repeated field wins."""
    body = await request.body()
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


async def json_of(request: Request) -> dict[str, Any]:
    """A JSON object body; ``{}`` when the body is not one (the endpoint then names the missing field)."""
    try:
        data = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


FormBody = Annotated[dict[str, str], Depends(form_of)]
JsonBody = Annotated[dict[str, Any], Depends(json_of)]


def _redirect(path: str, **query: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, status_code=303)


def _local_path(path: str) -> str:
    """``path`` when it is a path on this server (``/...``, not ``//host``), else ``/``: no open redirect."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _guard(token: str | None) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The access rule of the module docstring, as an HTTP middleware; adds the security headers to every answer."""

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host_header = request.headers.get("host", "")
        from_query = request.query_params.get("token")
        query_ok = (
            token is not None and from_query is not None and hmac.compare_digest(from_query.encode(), token.encode())
        )
        if token is None:
            client = request.client.host if request.client else None
            if not is_loopback(client) or not is_loopback(_host_name(host_header)):
                return PlainTextResponse(NON_LOCAL, status_code=403, headers=SECURITY_HEADERS)
        else:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            given = [request.cookies.get(TOKEN_COOKIE), request.headers.get(TOKEN_HEADER), bearer]
            if not query_ok and not any(g and hmac.compare_digest(g.encode(), token.encode()) for g in given):
                return PlainTextResponse(NO_TOKEN, status_code=403, headers=SECURITY_HEADERS)
        origin = request.headers.get("origin")
        # the host only, not the scheme: behind an HTTPS proxy the page's origin is https, the request here http
        if request.method == "POST" and origin is not None and urlsplit(origin).netloc != host_header:
            return PlainTextResponse("forbidden: a post from another site", status_code=403, headers=SECURITY_HEADERS)
        if query_ok and request.method == "GET":
            # the token moves from the address bar into a cookie
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            response: Response = RedirectResponse(
                request.url.path + (f"?{urlencode(rest)}" if rest else ""), status_code=303
            )
        else:
            response = await call_next(request)
        if query_ok:
            response.set_cookie(TOKEN_COOKIE, cast(str, token), httponly=True, samesite="strict")
        response.headers.update(SECURITY_HEADERS)
        return response

    return guard


# ---------------------------------------------------------------------------------------------------------------
# The app


def create_app(
    store_path: str | Path | LabelStore | None,
    *,
    token: str | None = None,
    lease_s: float = 300.0,
    judge: JudgeSession | None = None,
) -> FastAPI:
    """The app: questions from the label store at ``store_path`` (a path, or an open :class:`LabelStore`) on ``/``,
    saved debates of ``judge`` on ``/judge``; either may be None, not both. ``token``: see the module docstring.
    ``lease_s``: how long a question or debate stays with the person it was offered to."""
    if store_path is None and judge is None:
        raise ValueError("create_app needs a label store, a judge session, or both")
    labels = store_path if isinstance(store_path, LabelStore) or store_path is None else LabelStore(store_path)
    app = FastAPI(title="debate-amp serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(_guard(token))

    def ask_name(request: Request) -> RedirectResponse:
        return _redirect("/name", next=request.url.path + (f"?{request.url.query}" if request.url.query else ""))

    def chrome(request: Request, person: str | None) -> dict[str, Any]:
        """What every page shows around its content."""
        here = request.url.path
        judging = here.startswith("/judge") or labels is None
        title = "judging debates" if judging else "answering questions"
        return {"title": title, "person": person, "next_query": urlencode({"next": here}), "refresh_url": here}

    @app.get("/name")
    def name_page(request: Request, next: str = "/") -> HTMLResponse:
        current = person_of(request) or ""
        return render("name.html", **chrome(request, None), name=current, next=_local_path(next), max_name=MAX_NAME)

    @app.post("/name", response_model=None)
    def set_name(request: Request, form: FormBody) -> Response:
        target = _local_path(form.get("next", "/"))
        try:
            name = clean_name(form.get("name", ""))
        except ValueError as e:
            page = chrome(request, None)
            return render(
                "name.html", 422, **page, name=form.get("name", ""), next=target, error=str(e), max_name=MAX_NAME
            )
        response = _redirect(target)
        response.set_cookie(PERSON_COOKIE, quote(name, safe=""), max_age=365 * 24 * 3600, samesite="lax")
        return response

    if labels is None:

        @app.get("/")
        def to_judge() -> RedirectResponse:
            return _redirect("/judge")

    else:
        store = labels

        def notice_for(
            person: str, stored: str | None, taken: str | None, gone: str | None, skipped: str | None
        ) -> tuple[str, str | None]:
            """What the page says about the last post (read back from the store, not from the post)."""
            if stored and (label := store.label(stored)) is not None and label.human == person:
                return "ok", f"stored: {label.answer}"
            if (key := stored or taken) and (label := store.label(key)) is not None:
                who = "you" if label.human == person else label.human
                return "warn", f"not stored: {who} had already answered that question ({label.answer})"
            if gone:
                return "warn", "not stored: that question is no longer waiting for an answer"
            if skipped:
                return "ok", "skipped"
            return "", None

        def question_page(
            request: Request,
            person: str,
            question: PendingQuestion,
            notice: tuple[str, str | None] = ("", None),
            error: str | None = None,
            typed: dict[str, str] | None = None,
            status_code: int = 200,
        ) -> HTMLResponse:
            view = question.view
            typed = typed or {}
            draft = view.get("draft")
            return render(
                "question.html",
                status_code,
                **chrome(request, person),
                notice_kind=notice[0],
                notice=notice[1],
                key=question.key,
                view=view,
                arguments=_arguments(view.get("arguments") or [], view.get("argument")),
                draft_choice=_draft_choice(view),
                typed_answer=typed.get("answer", "" if draft is None else draft),
                typed_ask1=typed.get("ask1", ""),
                typed_ask2=typed.get("ask2", ""),
                error=error,
            )

        @app.get("/", response_model=None)
        def index(
            request: Request,
            stored: str | None = None,
            taken: str | None = None,
            gone: str | None = None,
            skipped: str | None = None,
        ) -> Response:
            person = person_of(request)
            if person is None:
                return ask_name(request)
            notice = notice_for(person, stored, taken, gone, skipped)
            question = store.claim(person, lease_s)
            if question is None:
                return render(
                    "empty.html",
                    **{**chrome(request, person), "refresh_url": "/"},
                    notice_kind=notice[0],
                    notice=notice[1],
                    refresh=REFRESH_S,
                    message="No question is waiting for an answer now.",
                )
            return question_page(request, person, question, notice)

        @app.post("/answer", response_model=None)
        def answer(request: Request, form: FormBody) -> Response:
            person = person_of(request)
            if person is None:
                return ask_name(request)
            key = form.get("key", "")
            question = store.pending_question(key)
            if question is None:  # answered (or withdrawn by the trainer) since the page was shown
                return _redirect("/", **({"taken": key} if store.label(key) is not None else {"gone": key}))
            ask = (form.get("ask1", ""), form.get("ask2", "")) if "ask1" in form else None
            try:
                if ask is not None and not all(part.strip() for part in ask):
                    raise ValueError("give both subquestions")
                reply = compose_reply(question.view, form.get("answer", ""), ask)
            except ValueError as e:
                return question_page(request, person, question, error=str(e), typed=form, status_code=422)
            try:
                stored = store.answer(key, reply, person)  # committed when it returns
            except KeyError:
                return _redirect("/", gone=key)
            return _redirect("/", **({"stored": key} if stored else {"taken": key}))

        @app.post("/skip", response_model=None)
        def skip_page(request: Request, form: FormBody) -> Response:
            person = person_of(request)
            if person is None:
                return ask_name(request)
            store.skip(form.get("key", ""), person)
            return _redirect("/", skipped="1")

        # JSON, for scripts and tests: the same store calls as the pages.

        @app.get("/api/next")
        def api_next(person: str) -> JSONResponse:
            try:
                person = clean_name(person)
            except ValueError as e:
                return JSONResponse({"error": str(e)}, status_code=422)
            question = store.claim(person, lease_s)
            if question is None:
                return JSONResponse({"question": None})
            fields = {"key": question.key, "kind": question.kind, "view": question.view}
            return JSONResponse({"question": {**fields, "lease_until": question.lease_until}})

        @app.post("/api/answer")
        def api_answer(data: JsonBody) -> JSONResponse:
            """``{"key", "person", "answer", "ask": [A, B] or null}`` -> ``{"stored", "reply"}``; 422 with
            ``error`` for an answer that does not fit, 404 for a key that was never queued."""
            try:
                person = clean_name(str(data.get("person", "")))
                question = store.pending_question(str(data.get("key", "")))
                if question is None:
                    label = store.label(str(data.get("key", "")))
                    if label is None:
                        return JSONResponse({"error": "no such question"}, status_code=404)
                    return JSONResponse({"stored": False, "reply": label.answer})
                ask = data.get("ask")
                if ask is not None and not (isinstance(ask, list) and len(ask) == 2):
                    raise ValueError("ask is two subquestions")
                pair = None if ask is None else (str(ask[0]), str(ask[1]))
                reply = compose_reply(question.view, str(data.get("answer", "")), pair)
            except ValueError as e:
                return JSONResponse({"error": str(e)}, status_code=422)
            try:
                stored = store.answer(question.key, reply, person)
            except KeyError:
                return JSONResponse({"error": "no such question"}, status_code=404)
            return JSONResponse({"stored": stored, "reply": reply if stored else store.get(question.key)})

    if judge is not None:
        _judge_routes(app, judge, lease_s, chrome, ask_name)
    return app


def _judge_routes(
    app: FastAPI,
    session: JudgeSession,
    lease_s: float,
    chrome: Callable[[Request, str | None], dict[str, Any]],
    ask_name: Callable[[Request], RedirectResponse],
) -> None:
    """``/judge``: a person's next saved debate, as its question (step 1) or with its arguments (step 2)."""
    from debate_amp.agents.humans.people import INSTRUCTIONS

    store = session.store
    index_of = {d.key: i for i, d in enumerate(session.debates)}
    lo, hi = (int(v) for v in CONFIDENCE_RANGE)

    def debate_page(
        request: Request,
        person: str,
        debate: SavedDebate,
        notice: tuple[str, str | None] = ("", None),
        error: str | None = None,
        typed: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        started = store.started(debate.key, person)
        typed = typed or {}
        context = {
            **chrome(request, person),
            "notice_kind": notice[0],
            "notice": notice[1],
            "debate": debate,
            "index": index_of[debate.key],
            "position": index_of[debate.key] + 1,
            "total": len(session.debates),
            "lo": lo,
            "hi": hi,
            "error": error,
            "typed_confidence": typed.get("confidence", ""),
        }
        if started is None or started.initial_answer is None:
            return render("judge_initial.html", status_code, **context, typed_answer=typed.get("answer", ""))
        arguments = _arguments(debate.arguments)
        return render(
            "judge_verdict.html",
            status_code,
            **context,
            started=started,
            arguments=arguments,
            instruction=INSTRUCTIONS["winner"],
        )

    def posted_debate(form: dict[str, str]) -> SavedDebate | None:
        try:
            return session.debates[int(form.get("debate", ""))]
        except (ValueError, IndexError):
            return None

    def confidence(form: dict[str, str]) -> float:
        try:
            value = float(form.get("confidence", ""))
        except ValueError:
            raise ValueError(f"a confidence from {lo} to {hi}%") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"a confidence from {lo} to {hi}%")
        return value

    @app.get("/judge", response_model=None)
    def judge_page(request: Request, judged: int | None = None) -> Response:
        person = person_of(request)
        if person is None:
            return ask_name(request)
        notice: tuple[str, str | None] = ("", None)
        if judged is not None and 0 <= judged < len(session.debates):
            judgment = store.judgment(session.debates[judged].key, person)
            if judgment is not None:
                what = f"{judgment.winner} won ({judgment.winner_confidence:g}%)"
                notice = ("ok", f"stored: your verdict on debate {judged + 1}, {what}")
        debate = session.claim(person, lease_s)
        if debate is None:
            done = session.judged_by(person)
            return render(
                "empty.html",
                **{**chrome(request, person), "refresh_url": "/judge"},
                notice_kind=notice[0],
                notice=notice[1],
                refresh=REFRESH_S,
                message=f"Nothing is left for you to judge now: you judged {done} of {len(session.debates)} debates.",
            )
        return debate_page(request, person, debate, notice)

    @app.post("/judge/initial", response_model=None)
    def judge_initial(request: Request, form: FormBody) -> Response:
        person = person_of(request)
        if person is None:
            return ask_name(request)
        debate = posted_debate(form)
        if debate is None:
            return _redirect("/judge")
        try:
            store.give_initial(debate.key, person, form.get("answer", ""), confidence(form))  # committed on return
        except ValueError as e:
            if store.started(debate.key, person) is None:  # not shown to them (or judged already): start afresh
                return _redirect("/judge")
            return debate_page(request, person, debate, error=str(e), typed=form, status_code=422)
        return _redirect("/judge")

    @app.post("/judge/verdict", response_model=None)
    def judge_verdict(request: Request, form: FormBody) -> Response:
        person = person_of(request)
        if person is None:
            return ask_name(request)
        debate = posted_debate(form)
        if debate is None:
            return _redirect("/judge")
        try:
            store.judge(
                debate.key,
                person,
                form.get("winner", ""),
                confidence(form),
                question_id=debate.question_id,
                update=debate.update,
            )  # committed on return
        except ValueError as e:
            started = store.started(debate.key, person)
            if started is None or started.initial_answer is None:
                return _redirect("/judge")
            return debate_page(request, person, debate, error=str(e), typed=form, status_code=422)
        return _redirect("/judge", judged=str(index_of[debate.key]))
