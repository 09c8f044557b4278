"""A short, plain label for a User-Agent header: "Firefox on Linux", "Safari on iOS".

ua-parser (uap-python, with the uap-core rules in ua-parser-builtins) does the parsing: recognising browsers and
systems from User-Agent strings is a moving target that a maintained rule set follows far better than a few regular
expressions of ours. Its rules compile on first use (about half a second), so `warm_up` runs that once in a thread at
start-up, before the first sign-in would pay for it on the event loop.
"""

from __future__ import annotations

import functools
import re

from ua_parser import parse

from ..ops import request_context

UNKNOWN = "an unknown browser"
MAX_ADDRESS = 64
MAX_LABEL = 64
# What is left of a family or system name is printed as it is: letters, digits, spaces and a little punctuation.
_PRINTABLE = re.compile(r"[^A-Za-z0-9 .+()-]")
_BROWSERS = {
    "HeadlessChrome": "Chrome",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Samsung Internet": "Samsung Internet",
}
_SYSTEMS = {"Mac OS X": "macOS", "Other": ""}


def _clean(name: str | None, renames: dict[str, str]) -> str:
    if not name or name == "Other":
        return ""
    return _PRINTABLE.sub("", renames.get(name, name)).strip()


@functools.lru_cache(maxsize=512)
def agent_label(user_agent: str | None) -> str:
    """The browser and the system, or whichever of them is known, else "an unknown browser"."""
    if not user_agent:
        return UNKNOWN
    parsed = parse(user_agent[:512])  # longer strings name nothing more, and cost more to match
    browser = _clean(parsed.user_agent.family if parsed.user_agent else None, _BROWSERS)
    system = _clean(parsed.os.family if parsed.os else None, _SYSTEMS)
    if browser and system:
        label = f"{browser} on {system}"
    else:
        label = browser or system or UNKNOWN
    return label[:MAX_LABEL]


def warm_up() -> None:
    """Compile the rules now (run in a thread), so the first real label costs microseconds."""
    agent_label("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")


def current_client() -> tuple[str | None, str | None]:
    """The address and user-agent label of the request being answered (none outside a request): what the activity
    log and the list of a person's sessions say about a client, never its cookies or headers as they came."""
    context = request_context.current()
    if context is None:
        return None, None
    scope = context.scope
    client = scope.get("client")
    address = str(client[0])[:MAX_ADDRESS] if client else None
    agent = next((value for name, value in scope.get("headers", ()) if name == b"user-agent"), None)
    return address, agent_label(agent.decode("latin-1") if agent is not None else None)
