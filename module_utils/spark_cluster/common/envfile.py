"""Docker env-file format (``docker run --env-file``, compose ``env_file``).

One ``KEY=VALUE`` per line; ``#`` starts a comment line; blank lines are ignored.
There is no quoting and no ``export``: everything after the first ``=`` is the value,
verbatim (it may contain ``=``, quotes and spaces, never a newline). Leading
whitespace of a line is ignored, as Docker does. A line without ``=`` (which Docker
would fill from the caller's environment) is rejected here: the runtime env must be
explicit.
"""

from __future__ import annotations

import re

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BAD_VALUE_CHARS = ("\n", "\r", "\x00")


def check_key(key) -> None:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(f"invalid environment variable name {key!r}: use [A-Za-z_][A-Za-z0-9_]*")


def check_value(key, value) -> str:
    """The value as a string; ValueError naming the key when it cannot go in a line."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{key}: value must be a string or a number, not {type(value).__name__}")
    value = str(value)
    for char in BAD_VALUE_CHARS:
        if char in value:
            raise ValueError(f"{key}: value contains a newline or NUL ({char!r}), which an env file cannot hold")
    return value


def parse(text: str) -> dict:
    """Env-file text -> dict (insertion order; a later duplicate wins)."""
    result = {}
    if text.startswith("\ufeff"):
        text = text[1:]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"line {number}: {line!r} has no '=' (a bare name would be taken from the caller's environment)")
        check_key(key)
        result[key] = value
    return result


def render(mapping, header=None) -> str:
    """dict -> env-file text, keys in the mapping's order. ``header`` (may be
    several lines) becomes ``# `` comment lines on top."""
    lines = []
    if header:
        for line in str(header).splitlines():
            lines.append(f"# {line}".rstrip())
    for key, value in mapping.items():
        check_key(key)
        lines.append(f"{key}={check_value(key, value)}")
    return "\n".join(lines) + "\n" if lines else ""


def read(path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return parse(handle.read())
