"""DKIM signing of outgoing marketing mail with dkimpy, the key read once from ACCORD_DKIM_KEY_FILE.

dkimpy does the DKIM work (canonicalisation, body and header hashes, the tag list and its folding); its RSA
operation is pure Python (`pow` on 1024-bit halves), about 10 ms per signature on the benchmark machine, which
alone caps a sender at 100 messages/s. `Signer` therefore hands that one step, RSASSA-PKCS1-v1_5 over the
header hash dkimpy computed, to OpenSSL through `cryptography` when it is installed: PKCS#1 v1.5 is
deterministic, so the signature is byte for byte the one `dkim.sign` makes (a test checks it), in about 0.3 ms.
Without `cryptography`, `dkim.sign` itself is used.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path
from typing import Any

import dkim
from django.conf import settings

# RFC 6376 5.4 and RFC 8058 3.3: the one-click headers must be covered by the signature.
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
                  b"list-unsubscribe", b"list-unsubscribe-post")


# dkimpy parses the PEM key again at every signature (0.4 ms, a fifth of a message's whole cost in the benchmark);
# the parse is a pure function of the key's bytes, so it is cached for the process.
if not hasattr(dkim.parse_pem_private_key, "cache_info"):
    dkim.parse_pem_private_key = lru_cache(maxsize=8)(dkim.parse_pem_private_key)


class DkimError(Exception):
    """A DKIM key or setting that cannot be used; the message says which."""


class _OpenSslDKIM(dkim.DKIM):
    """dkimpy's signer with the RSA private-key step done by OpenSSL (same bytes; see the module's doc)."""

    openssl_key: Any = None

    def gen_header(self, fields: Any, include_headers: Any, canon_policy: Any, header_name: Any, pk: Any,
                   standardize: bool = False) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        # As dkim.DKIM.gen_header (dkimpy 1.1) for rsa-sha256 without `standardize`, but for the signing step.
        header_value = b"; ".join(b"=".join(x) for x in fields)
        header_value = dkim.fold(header_value, namelen=len(header_name), linesep=b"\r\n")
        header_value = dkim.RE_BTAG.sub(b"\\1", header_value)
        header = (header_name, b" " + header_value)
        h = dkim.HashThrough(self.hasher(), self.debug_content)
        sig = dict(fields)
        headers = canon_policy.canonicalize_headers(self.headers)
        self.signed_headers = dkim.hash_headers(h, canon_policy, headers, include_headers, header, sig)
        signature = self.openssl_key.sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        idx = next(i for i in range(len(fields)) if fields[i][0] == b"b")
        fields[idx] = (b"b", base64.b64encode(signature))
        header_value = b"; ".join(b"=".join(x) for x in fields) + self.linesep
        return bytes(dkim.fold(header_value, namelen=len(header_name), linesep=self.linesep))


class Signer:
    """Signs messages for one domain and selector with one RSA key (PEM)."""

    def __init__(self, key: bytes, selector: str, domain: str, *, openssl: bool = True) -> None:
        self.key, self.selector, self.domain = key, selector.encode(), domain.encode()
        try:
            dkim.crypto.parse_pem_private_key(key)
        except Exception as e:
            raise DkimError(f"the DKIM key is not an RSA private key in PEM form ({e})") from e
        self.openssl_key: Any = None
        if openssl:
            try:
                from cryptography.hazmat.primitives import serialization
            except ImportError:  # pragma: no cover - cryptography is a dependency
                pass
            else:
                self.openssl_key = serialization.load_pem_private_key(key, password=None)

    def header(self, message: bytes) -> bytes:
        """The `DKIM-Signature: ...\\r\\n` header field for this message (relaxed/simple, rsa-sha256)."""
        if self.openssl_key is None:
            return bytes(dkim.sign(message, self.selector, self.domain, self.key, include_headers=list(SIGNED_HEADERS)))
        signer = _OpenSslDKIM(message)
        signer.openssl_key = self.openssl_key
        return bytes(signer.sign(self.selector, self.domain, self.key, include_headers=list(SIGNED_HEADERS)))

    def sign(self, message: bytes) -> bytes:
        return self.header(message) + message


@lru_cache(maxsize=4)
def _load(path: str, selector: str, domain: str) -> Signer:
    try:
        key = Path(path).read_bytes()
    except OSError as e:
        raise DkimError(f"ACCORD_DKIM_KEY_FILE {path}: {e.strerror or e}") from e
    return Signer(key, selector, domain)


def configured() -> Signer | None:
    """The signer the settings describe, or None when no key is configured (mail then goes unsigned)."""
    path = getattr(settings, "ACCORD_DKIM_KEY_FILE", "")
    if not path:
        return None
    selector = getattr(settings, "ACCORD_DKIM_SELECTOR", "") or "accord"
    domain = getattr(settings, "ACCORD_DKIM_DOMAIN", "") or settings.DEFAULT_FROM_EMAIL.rpartition("@")[2]
    if not domain:
        raise DkimError("ACCORD_DKIM_DOMAIN is not set and ACCORD_MAIL_FROM has no domain")
    return _load(str(path), selector, domain)
