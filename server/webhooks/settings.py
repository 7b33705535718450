"""What `--webhook*` configure (server/cli.py): where events go, how signed, retried, kept."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

__all__ = ["KEEP_SECONDS", "SECRET_PREFIX", "WebhookSettings", "check_secret"]

SECRET_PREFIX = "whsec_"
# 7 days, as GitHub Enterprise Server keeps its delivery log (github.com 3, Stripe 30): a
# failure seen after a weekend is still listed, with its attempts; the retries of one
# delivery end long before (the 12th attempt 34 to 68 minutes after the first).
KEEP_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    urls: tuple[str, ...]
    secret: str  # the Standard Webhooks form: whsec_ + base64 of the key
    # A draft's `draft.changed` waits for this many seconds without a new version ...
    debounce_seconds: float = 2.0
    # ... but no longer than this after the first version it covers (a draft edited non-stop).
    max_wait_seconds: float = 60.0
    include_text: bool = False  # text fields' content in `draft.changed` (off: values only)
    max_attempts: int = 12  # then the delivery is `failed`
    retry_base_seconds: float = 2.0  # the delay after the first failure, doubled each time ...
    retry_max_seconds: float = 3600.0  # ... up to this (before jitter)
    timeout_seconds: float = 10.0  # one attempt, connecting included
    # A delivered or failed delivery (and its attempts) is removed this long after its last
    # attempt (server/webhooks/retention.py); pending ones stay until they finish.
    keep_seconds: float = KEEP_SECONDS


def check_secret(text: str) -> str:
    """`text` if it is a usable Standard Webhooks secret (`whsec_` + base64 of at least 16
    bytes); ValueError saying what is wrong otherwise (never echoing the secret)."""
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r} (whsec_ + base64)")
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret after 'whsec_' is not base64") from None
    if len(key) < 16:
        raise ValueError("the webhook secret's key is shorter than 16 bytes")
    return text
