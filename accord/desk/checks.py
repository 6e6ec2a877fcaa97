"""What `accord doctor` and `/healthz/details` ask of the desk: its SMTP server and mailboxes answer.

Registered with `accord.ops.checks` from `DeskConfig.ready()`: ops sits below the desk and never imports it.
"""

from __future__ import annotations

from django.conf import settings

from accord.ops.checks import FAIL, OK, Finding, reachable, register


@register
def mail() -> list[Finding]:
    from .models import Mailbox

    out: list[Finding] = []
    if settings.EMAIL_BACKEND.endswith("smtp.EmailBackend"):
        problem = reachable(settings.EMAIL_HOST, int(settings.EMAIL_PORT))
        where = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        out.append(Finding("smtp", FAIL, f"cannot connect to the SMTP server {where}: {problem}",
                           "start it, or set ACCORD_SMTP_HOST/ACCORD_SMTP_PORT; replies wait in the outbox meanwhile")
                   if problem else Finding("smtp", OK, f"{where} answers"))
    else:
        out.append(Finding("smtp", OK, f"not used: mail goes to {settings.EMAIL_BACKEND.rsplit('.', 2)[-2]}"))
    for box in Mailbox.objects.filter(enabled=True).order_by("name"):
        problem = reachable(box.host, box.port)
        out.append(Finding(f"mailbox {box.name}", FAIL, f"cannot connect to {box.host}:{box.port}: {problem}",
                           "check the IMAP server and the mailbox's host and port in Desk settings")
                   if problem else Finding(f"mailbox {box.name}", OK, f"{box.host}:{box.port} answers"
                                           + (f" (last poll error: {box.last_error})" if box.last_error else "")))
    return out
