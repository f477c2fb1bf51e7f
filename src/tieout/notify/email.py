"""Email over SMTP: STARTTLS and login when configured, a plain-text and an HTML part. The digest
goes to the owner's address (`owner_addresses`) or, failing that, to `to`."""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage

from pydantic import Field

from tieout.notify import Message, NotifierSettings, NotifyError, register_notifier


class EmailSettings(NotifierSettings):
    host: str = Field(description="SMTP server.")
    port: int = Field(587, description="SMTP port (587 with STARTTLS).")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS before logging in.")
    username: str | None = Field(None, description="Login user (no login when absent).")
    password: str | None = Field(None, description="Login password (use ${ENV_VAR}).")
    from_addr: str = Field(description="Sender address.")
    to: list[str] = Field(default_factory=list, description="Recipients when the owner has no address.")
    owner_addresses: dict[str, str] = Field(default_factory=dict, description="owner -> email address.")
    timeout_seconds: float = Field(30.0, gt=0, description="Connection timeout.")
    ca_file: str | None = Field(None, description="CA bundle to verify the server (default: the system's).")


def email_message(settings: EmailSettings, message: Message) -> EmailMessage:
    recipients = [settings.owner_addresses[message.owner]] if message.owner in settings.owner_addresses \
        else settings.to
    if not recipients:
        raise NotifyError(f"email: no address for owner '{message.owner}' and no `to` recipients")
    msg = EmailMessage()
    msg["Subject"] = message.title
    msg["From"] = settings.from_addr
    msg["To"] = ", ".join(recipients)
    msg["X-Tieout-Dedupe-Keys"] = ",".join(i.dedupe_key for i in message.items)
    msg.set_content(message.title + "\n\n" + "\n".join(message.lines()) + "\n")
    rows = "".join(
        f"<tr><td>{html.escape(i.priority)}</td><td>{html.escape(i.finding_id)}</td><td>{html.escape(i.category)}</td>"
        f"<td>{html.escape(i.customer_id or '')}</td><td style='text-align:right'>{html.escape(i.amount)}</td>"
        f"<td>{html.escape(i.explanation)}</td></tr>" for i in message.items)
    msg.add_alternative(
        f"<html><body><h2>{html.escape(message.title)}</h2><table border='1' cellpadding='4'>"
        "<tr><th>priority</th><th>finding</th><th>category</th><th>customer</th><th>at risk</th>"
        f"<th>explanation</th></tr>{rows}</table></body></html>", subtype="html")
    return msg


@register_notifier("email", EmailSettings)
def send_email(settings: EmailSettings, message: Message) -> None:
    """SMTP email with STARTTLS and login, HTML and plain text."""
    msg = email_message(settings, message)
    where = f"SMTP server {settings.host}:{settings.port}"
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=settings.ca_file))
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise NotifyError(f"{where}: login refused for '{settings.username}': {exc.smtp_code}") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise NotifyError(f"{where}: {exc} (set starttls: false only for a trusted local relay)") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise NotifyError(f"{where}: cannot deliver: {exc}", transient=True) from None
