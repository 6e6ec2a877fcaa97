"""What `accord doctor` and `/healthz/details` ask of outreach: can campaign mail be DKIM-signed?

Registered with `accord.ops.checks` from `OutreachConfig.ready()`: ops sits below outreach and never imports it.
"""

from __future__ import annotations

from accord.ops.checks import FAIL, OK, WARN, Finding, register


@register
def dkim() -> list[Finding]:
    from .dkimsign import DkimError, configured
    from .models import Campaign

    try:
        signer = configured()
    except DkimError as e:
        return [Finding("dkim", FAIL, f"campaign mail cannot be signed: {e}",
                        "point ACCORD_DKIM_KEY_FILE at a readable RSA private key in PEM form (docs/outreach.md)")]
    if signer is None:
        if Campaign.objects.exists():
            return [Finding("dkim", WARN, "campaign mail goes out without a DKIM signature (ACCORD_DKIM_KEY_FILE "
                                          "is not set)",
                            "large mailbox providers refuse unsigned bulk mail: set ACCORD_DKIM_KEY_FILE, "
                            "ACCORD_DKIM_SELECTOR and ACCORD_DKIM_DOMAIN, and publish the public key (docs/outreach.md)")]
        return [Finding("dkim", OK, "no DKIM key set, and no campaign yet")]
    return [Finding("dkim", OK, f"campaign mail is signed for {signer.domain.decode()} "
                                f"(selector {signer.selector.decode()})")]
