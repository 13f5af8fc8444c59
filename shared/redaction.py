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

# Each pattern starts with a literal (found fast) and bounds every repeat, so that a long
# hostile text costs time in proportion to its length.
# The password ends at the last "@" before the host: it may itself hold an "@".
_URL_PASSWORD = re.compile(r"(?P<user>://[^:/@\s]{0,256}):(?P<pw>[^/\s]{1,256})@")
_AUTH_SCHEMES = "basic|bearer|token|digest|negotiate|apikey"
# An Authorization header written out as "Authorization: Basic …", "authorization='Token …'"
# or a mapping's "'authorization': 'Bearer …'": everything after the scheme is the secret.
_AUTHORIZATION_HEADER = re.compile(
    r"(?i)(?P<name>\b(?:proxy-)?authorization\b['\"]?\s{0,8}[:=]\s{0,8}['\"]?)"
    rf"(?P<scheme>(?:{_AUTH_SCHEMES})\s{{1,8}})?(?P<credentials>[^\s'\",;}}\]]+)"
)
# A scheme word followed by something that looks like a credential (8+ characters of a
# token's alphabet, at least one of them a digit or a symbol, so prose like "Token expired"
# stays as it is).
_SCHEME_CREDENTIALS = re.compile(
    rf"(?i)\b(?P<scheme>(?:{_AUTH_SCHEMES})\s{{1,8}})(?=[A-Za-z]{{0,256}}[0-9+/=._~-])"
    r"(?P<credentials>[A-Za-z0-9+/=._~-]{8,})"
)
# A name holding one of these words names a secret; a match starts at the word (what comes
# before it in the name is left as it is).
_SECRET_WORD = r"(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|signature|credential)"
_SECRET_NAME = rf"[\w.-]{{0,40}}{_SECRET_WORD}[\w.-]{{0,40}}"
# name=value, as in query strings (?access_token=…&sig=…) and libpq DSNs (password=…).
_SECRET_PAIR = re.compile(rf"(?i)(?P<name>{_SECRET_WORD}[\w.-]{{0,40}}=)(?P<value>[^\s&#'\",;]+)")
_SECRET_STEMS = ("pass", "pwd", "secret", "token", "key", "signature", "credential")
_QUERY_SIGNATURE_NAMES = ("sig=", "key=", "auth=")
_QUERY_SIGNATURE = re.compile(r"(?i)(?P<name>[?&;](?:sig|key|auth)=)(?P<value>[^\s&#'\",;]+)")
# "password": "…" in a dumped JSON object or Python mapping.
_SECRET_ITEM = re.compile(rf"(?i)(?P<name>{_SECRET_WORD}[\w.-]{{0,40}}['\"]\s{{0,8}}:\s{{0,8}}['\"])(?P<value>[^'\"]*)")

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
        text = _URL_PASSWORD.sub(lambda m: f"{m['user']}:{REDACTED}@", text)
    # Each pattern runs only where its words occur: most lines hold none of them.
    lowered = text.lower()
    if "authorization" in lowered:
        text = _AUTHORIZATION_HEADER.sub(lambda m: f"{m['name']}{m['scheme'] or ''}{REDACTED}", text)
    if any(scheme in lowered for scheme in _AUTH_SCHEMES.split("|")):
        text = _SCHEME_CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}", text)
    if any(stem in lowered for stem in _SECRET_STEMS):
        if "=" in text:
            text = _SECRET_PAIR.sub(lambda m: f"{m['name']}{REDACTED}", text)
        if ":" in text:
            text = _SECRET_ITEM.sub(lambda m: f"{m['name']}{REDACTED}", text)
    if any(name in lowered for name in _QUERY_SIGNATURE_NAMES):
        text = _QUERY_SIGNATURE.sub(lambda m: f"{m['name']}{REDACTED}", text)
    return text


_LEADING_SCHEME = re.compile(rf"(?i)^\s*(?:{_AUTH_SCHEMES})\s+")


def is_secret_name(name: str) -> bool:
    """A mapping key whose value is a secret whatever it holds (``password``, ``authorization``)."""
    return bool(re.fullmatch(_SECRET_NAME, name, re.IGNORECASE)) or name.lower() in {
        "authorization",
        "proxy-authorization",
    }


def hidden_value(value: object) -> str:
    """The value of a secret-named field: ``***``, after its scheme if it has one (``Token ***``)."""
    scheme = _LEADING_SCHEME.match(value) if isinstance(value, str) else None
    return f"{scheme.group()}{REDACTED}" if scheme else REDACTED
