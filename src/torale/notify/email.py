"""Email deliveries over SMTP (aiosmtplib): a plain-text and an HTML part. Both end with the
watched text's diff when the event carries one (`data.diff`)."""

from __future__ import annotations

import html
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from torale.notify.sending import Outgoing, SendResult, message_text

_DIFF_LINE_STYLES = {"+": "color:#1a7f37", "-": "color:#cf222e", "@": "color:#6e7781"}


def _diff_block(diff: str) -> str:
    """The watched text's unified diff as preformatted HTML, added lines green, removed red."""
    lines = []
    for line in diff.splitlines():
        style = _DIFF_LINE_STYLES.get(line[:1]) if not line.startswith(("+++", "---")) else None
        text = html.escape(line)
        lines.append(f'<span style="{style}">{text}</span>' if style else text)
    return (
        "<p><strong>Diff:</strong></p>"
        '<pre style="font-family:monospace;white-space:pre-wrap">' + "\n".join(lines) + "</pre>"
    )


def _source_item(source: dict[str, Any]) -> str:
    href = html.escape(source["url"], quote=True)
    return f'<li><a href="{href}">{html.escape(source.get("title") or source["url"])}</a></li>'


class EmailSender:
    def __init__(self, smtp_url: str | None, *, sender: str, timeout: float) -> None:
        self.sender = sender
        self.timeout = timeout
        self.options: dict[str, Any] | None = None
        if smtp_url:
            parts = urlsplit(smtp_url)
            query = parse_qs(parts.query)
            secure = parts.scheme == "smtps"
            starttls = query.get("starttls", ["auto"])[0]
            self.options = {
                "hostname": parts.hostname or "localhost",
                "port": parts.port or (465 if secure else 587),
                "username": unquote(parts.username) if parts.username else None,
                "password": unquote(parts.password) if parts.password else None,
                "use_tls": secure,
                "start_tls": None if starttls == "auto" or secure else starttls == "required",
                "validate_certs": query.get("verify", ["true"])[0] != "false",
            }

    def message(self, outgoing: Outgoing) -> EmailMessage:
        title, body = message_text(outgoing.payload)
        result = outgoing.payload["data"]["result"]
        sources = result.get("grounding_sources") or []
        message = EmailMessage()
        message["Subject"] = title
        message["From"] = self.sender
        message["To"] = outgoing.channel["address"]
        message["Message-ID"] = make_msgid(idstring=str(outgoing.id), domain="torale")
        message.set_content(body + "\n")
        items = "".join(_source_item(s) for s in sources)
        change = result.get("change_summary")
        diff = outgoing.payload["data"].get("diff")
        message.add_alternative(
            "<html><body>"
            f"<h2>{html.escape(title)}</h2>"
            + (
                f"<p>{html.escape(str(result['answer']))}</p>"
                if result.get("answer")
                # Not a verdict (a selector that stopped matching): the message itself.
                else f'<p style="white-space:pre-wrap">{html.escape(body)}</p>'
            )
            + (f"<p><strong>What changed:</strong> {html.escape(change)}</p>" if change else "")
            + (f"<p>Sources:</p><ul>{items}</ul>" if items else "")
            + (_diff_block(str(diff)) if diff else "")
            + "</body></html>",
            subtype="html",
        )
        return message

    async def send(self, outgoing: Outgoing) -> SendResult:
        if self.options is None:
            return SendResult(
                False, error="email is not configured on this server (set TORALE_SMTP_URL)"
            )
        try:
            message = self.message(outgoing)
        except (ValueError, TypeError) as exc:
            return SendResult(False, error=f"the email could not be built: {exc}", permanent=True)
        try:
            await aiosmtplib.send(message, timeout=self.timeout, **self.options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return SendResult(
                False, error=f"the mail server refused the address: {exc}", permanent=True
            )
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx is final, 4xx is "try later".
            return SendResult(
                False,
                status_code=exc.code,
                error=f"the mail server answered {exc.code}: {exc.message}",
                permanent=exc.code >= 500,
            )
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            return SendResult(
                False, error=f"could not reach the mail server ({type(exc).__name__})"
            )
        return SendResult(True, status_code=250)
