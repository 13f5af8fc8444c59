"""Keeping secrets out of text we write down: log lines, dead-letter headers, health answers.

Two kinds of secret are hidden. Values we know (passwords and tokens from the settings
and the carriers file, registered once at start-up) wherever they appear, and values that
look like credentials by where they stand: a URL's password (``scheme://user:pass@``),
an ``Authorization`` header's credentials (``Basic …``, ``Token …``, ``Bearer …``), and
``password=``/``token=``/``api_key=``-like pairs in query strings, DSNs and dumped
mappings. What is redacted becomes ``***``; the rest of the text stays readable.
"""
from __future__ import annotations

import re
import threading
from urllib.parse import unquote, urlsplit

REDACTED = "***"
MIN_SECRET_LENGTH = 3  # shorter values are everywhere in ordinary text; hiding them would hide nothing

# The password ends at the last "@" before the host: it may itself hold an "@".
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^/\s]+)@")
_AUTH_SCHEMES = "basic|bearer|token|digest|negotiate|apikey"
# An Authorization header written out as "Authorization: Basic …", "authorization='Token …'"
# or a mapping's "'authorization': 'Bearer …'": everything after the scheme is the secret.
_AUTHORIZATION_HEADER = re.compile(
    r"(?i)(?P<name>\b(?:proxy-)?authorization\b['\"]?\s*[:=]\s*['\"]?)"
    rf"(?P<scheme>(?:{_AUTH_SCHEMES})\s+)?(?P<credentials>[^\s'\",;}}\]]+)")
# A scheme word followed by something that looks like a credential (8+ characters of a
# token's alphabet, at least one of them a digit or a symbol, so prose like "Token expired"
# stays as it is).
_SCHEME_CREDENTIALS = re.compile(
    rf"(?i)\b(?P<scheme>(?:{_AUTH_SCHEMES})\s+)(?=[A-Za-z]*[0-9+/=._~-])(?P<credentials>[A-Za-z0-9+/=._~-]{{8,}})")
# Bounded around the word, so that a long run of word characters costs little to scan.
_SECRET_NAME = r"[\w.-]{0,40}(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|signature|credential)[\w.-]{0,40}"
# name=value, as in query strings (?access_token=…&sig=…) and libpq DSNs (password=…).
_SECRET_PAIR = re.compile(rf"(?i)(?P<name>(?:\b|[?&;]){_SECRET_NAME}=)(?P<value>[^\s&#'\",;]+)")
_QUERY_SIGNATURE = re.compile(r"(?i)(?P<name>[?&;](?:sig|key|auth|code)=)(?P<value>[^\s&#'\",;]+)")
# "password": "…" in a dumped JSON object or Python mapping.
_SECRET_ITEM = re.compile(rf"(?i)(?P<name>['\"]{_SECRET_NAME}['\"]\s*:\s*['\"])(?P<value>[^'\"]*)")

_registered: frozenset[str] = frozenset()
_registering = threading.Lock()


def register_secrets(*values: str | None) -> None:
    """Values that must never be written down (passwords, tokens), wherever they appear."""
    global _registered
    fresh = {value for value in values if value and len(value) >= MIN_SECRET_LENGTH}
    with _registering:  # readers take the frozen set as it is; a new one replaces it whole
        _registered = _registered | fresh


def secrets_in_url(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def redact_text(text: str, secrets: frozenset[str] | set[str] = frozenset()) -> str:
    """``text`` with every registered secret, every one of ``secrets`` and every credential-shaped
    value replaced by ``***``."""
    # Longest first: a secret that contains a shorter one is hidden whole, not in pieces.
    for secret in sorted(_registered.union(secrets), key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    lowered = text.lower()
    if "auth" in lowered:
        text = _AUTHORIZATION_HEADER.sub(lambda m: f"{m['name']}{m['scheme'] or ''}{REDACTED}", text)
    if any(scheme in lowered for scheme in _AUTH_SCHEMES.split("|")):
        text = _SCHEME_CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}", text)
    if "=" in text:
        text = _SECRET_PAIR.sub(lambda m: f"{m['name']}{REDACTED}", text)
        text = _QUERY_SIGNATURE.sub(lambda m: f"{m['name']}{REDACTED}", text)
    if ":" in text:
        text = _SECRET_ITEM.sub(lambda m: f"{m['name']}{REDACTED}", text)
    return text


_LEADING_SCHEME = re.compile(rf"(?i)^\s*(?:{_AUTH_SCHEMES})\s+")


def is_secret_name(name: str) -> bool:
    """A mapping key whose value is a secret whatever it holds (``password``, ``authorization``)."""
    return bool(re.fullmatch(_SECRET_NAME, name, re.IGNORECASE)) or name.lower() in {
        "authorization", "proxy-authorization"}


def hidden_value(value) -> str:
    """The value of a secret-named field: ``***``, after its scheme if it has one (``Token ***``)."""
    scheme = _LEADING_SCHEME.match(value) if isinstance(value, str) else None
    return f"{scheme.group()}{REDACTED}" if scheme else REDACTED
