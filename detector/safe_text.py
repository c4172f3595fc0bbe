"""Making attacker-controlled text safe to show: log lines can carry terminal escape sequences."""

from __future__ import annotations

import html
import re

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def for_terminal(text: object) -> str:
    """*text* with control characters (ANSI escapes, bidi overrides...) shown as ``\\xNN`` escapes."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", str(text))


def escape_html(value: object) -> str:
    """Log content for HTML: control and bidi characters made visible, then HTML-escaped (quotes too)."""
    return html.escape(for_terminal("" if value is None else value), quote=True)
