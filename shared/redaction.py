"""Keeping secrets out of log lines: URL passwords and configured secret values."""
from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

REDACTED = "***"
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")


def secrets_in_url(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def redact_text(text: str, secrets: frozenset[str] | set[str] = frozenset()) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    for secret in secrets:
        if secret and len(secret) >= 3 and secret in text:
            text = text.replace(secret, REDACTED)
    return text
