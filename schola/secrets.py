"""Secrets never reach a transcript, a saved config, a log or an error message: one home for recognising and
redacting them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

MASK = "***"
# Keys whose values are secrets wherever they appear in a config.
SECRET_KEY = re.compile(r"(api_?key|token|secret|password|authorization|auth|cookie|credentials?)$", re.I)
# Folders of request headers: every value under them is redacted (an `Authorization: Bearer ...` and its kin).
HEADER_KEYS = frozenset({"headers", "extra_headers", "default_headers"})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_KEY_PREFIX = re.compile(r"^(sk|pk|rk|sess|ghp|gho|github_pat|hf|xox[abpr]|glpat|AKIA|AIza)[-_]", re.I)
# `scheme://user:key@`: anchored on the `://` (a scheme character before it), not on the scheme's first letter,
# which made every start in a long run of letters scan to its end (quadratic: 300,000 characters took minutes).
_URL_USERINFO = re.compile(r"(?<=[A-Za-z0-9+.-])://[^/@\s]+@")


def looks_like_key(value: str) -> bool:
    """True for a value that looks like an API key rather than a name: a known key prefix, or a long run of
    letters and digits of mixed case (a variable name is short, and by convention upper case)."""
    v = value.strip()
    if _KEY_PREFIX.match(v):
        return True
    return len(v) >= 24 and any(c.isdigit() for c in v) and any(c.islower() for c in v) and any(c.isupper() for c in v)


def check_env_name(value: str) -> str | None:
    """Why `value` cannot be the NAME of an environment variable holding a key (None when it can)."""
    if looks_like_key(value):
        return "this looks like a key itself; put the key in an environment variable and give its NAME here"
    if not ENV_NAME.match(value):
        return "expected the NAME of an environment variable (letters, digits, _), e.g. OPENAI_API_KEY"
    return None


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every known secret value and every URL user-info (`user:key@host`) replaced by ***."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, MASK)
    return _URL_USERINFO.sub("://" + MASK + "@", text)


def redact_config(obj: Any, secrets: Sequence[str] = (), *, _under_headers: bool = False) -> Any:
    """A copy with secret-looking keys, everything under headers, URL user-info and known secret values
    replaced by ***."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            hidden = _under_headers or (SECRET_KEY.search(str(k)) is not None and not str(k).endswith("_env"))
            if hidden and v not in (None, "", {}, []) and not isinstance(v, (dict, list)):
                out[k] = MASK
            else:
                out[k] = redact_config(v, secrets, _under_headers=_under_headers or str(k).lower() in HEADER_KEYS)
        return out
    if isinstance(obj, list):
        return [redact_config(v, secrets, _under_headers=_under_headers) for v in obj]
    if isinstance(obj, str):
        return MASK if _under_headers and obj else redact(obj, secrets)
    return obj


def env_secrets(config: Any) -> list[str]:
    """The values of every environment variable a config names through `api_key_env`."""
    names: set[str] = set()

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "api_key_env" and isinstance(v, str):
                    names.add(v)
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(config)
    return [v for n in names if len(v := os.environ.get(n, "")) >= 4]


# Words that, as a part of an environment variable's name, say it holds a secret: OPENAI_API_KEY,
# AWS_SECRET_ACCESS_KEY, HF_TOKEN, PGPASSWORD's kin (DB_PASSWORD), GOOGLE_APPLICATION_CREDENTIALS.
_SECRET_ENV_PARTS = frozenset(
    {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "CREDENTIALS"}
)
MIN_SECRET_LEN = 8  # shorter values ("1", "true") would mask ordinary text


def known_secrets(config: Any = None, extra: Iterable[str] = ()) -> list[str]:
    """Every secret value this process knows, to mask wherever it appears (not only under known keys): the
    environment variables whose names say they hold one, those `config` names through `api_key_env`, and
    `extra` (keys typed on the command line). Longest first, so a secret that contains another is masked whole."""
    values = {v for n, v in os.environ.items() if _SECRET_ENV_PARTS & set(n.upper().split("_"))}
    values |= set(env_secrets(config)) if config is not None else set()
    values |= set(extra)
    return sorted((v for v in values if len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def override_secrets(overrides: Iterable[str]) -> list[str]:
    """Values typed on the command line that are secrets: under a secret-looking key, or looking like a key."""
    out = []
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or not value:
            continue
        last = key.lstrip("+~").split(".")[-1]
        if (SECRET_KEY.search(last) and not last.endswith("_env")) or looks_like_key(value):
            out.append(value.strip("'\""))
    return out
