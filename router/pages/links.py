"""The HTML pages of an ack link. Pure.

``GET /v1/ack/{token}`` shows which alert and a button; mail scanners and link
previews follow GET links, so GET never acknowledges. The button ``POST``s to the
same path, which acknowledges and says so. A refused token gets a page saying why.
"""

from __future__ import annotations

from html import escape

from router.pages.tokens import Claims, Refused

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
    "button{font-size:1.2rem;padding:.6rem 1.4rem}"
)


def _page(heading: str, *paragraphs: str, form: bool = False) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    button = (
        '<form method="post"><button id="ack" type="submit">Acknowledge</button></form>'
        if form
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(heading)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(heading)}</h1>{body}{button}</body></html>"
    )


def confirm_page(claims: Claims) -> str:
    """What GET shows: the alert, who is answering, and the button."""
    return _page(
        "Acknowledge this alert?",
        f'<strong id="title">{escape(claims.title)}</strong>',
        f"Alert <code>{escape(claims.alert_key)}</code>, as <code>{escape(claims.user_id)}</code>.",
        "Acknowledging stops the escalation: nobody else is paged for it.",
        form=True,
    )


def done_page(claims: Claims) -> str:
    """What POST answers once the acknowledgement is on its way."""
    return _page(
        "Acknowledged",
        f'<strong id="title">{escape(claims.title)}</strong>',
        f"Alert <code>{escape(claims.alert_key)}</code> is acknowledged by "
        f"<code>{escape(claims.user_id)}</code>. Nobody else will be paged for it.",
    )


def refusal_page(refused: Refused) -> str:
    """Why a link does not work, and nothing was changed."""
    why = (
        "This link has expired. Acknowledge from a newer message, or with <code>router ack</code>."
        if refused.why == "expired"
        else "This link is not valid: it was changed or not issued by this router."
    )
    return _page("Link refused", why, "Nothing was acknowledged.")
