"""The one rule for a URL A1 itself connects to (the decision-log sink, a metrics scrape).

Such URLs come from input another party may write (a sidecar's config, an xDS
node's forgeable metadata), and a loose one is a server-side request forgery or a
header injection: so one check, with one set of holes closed everywhere. Accepted:
``http://`` only, printable ASCII without spaces (nothing to smuggle onto a request
line), at most ``max_length`` characters, no user info, no fragment, a port in
[1, 65535] when one is named, and a host that is a loopback address or, with
``allowed_hosts``, ``localhost`` or one of them (exact); without ``allowed_hosts``,
any DNS host name, but an IP literal only when it is loopback.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


class UrlError(ValueError):
    """A refused URL, with a one-line reason; the caller puts its field's name in front."""


@dataclass(frozen=True)
class HttpUrl:
    """The checked parts of an ``http://`` URL."""

    url: str  # as given
    host: str  # lower case, without brackets
    port: int | None  # None when the URL names none
    path: str
    query: str


def check_http_url(url: object, max_length: int, allowed_hosts: Collection[str] | None = None,
                   *, allowed_name: str = "allowed host") -> HttpUrl:  # fmt: skip
    """The parts of ``url``, or ``UrlError`` saying which rule (module docstring) it breaks.
    ``allowed_name`` names the allowed hosts in the refusal (``allowed scrape host``)."""
    if not isinstance(url, str):
        raise UrlError(f"must be a string (http://HOST:PORT/PATH), got {type(url).__name__}")
    if len(url) > max_length:
        raise UrlError(f"must be at most {max_length} characters, got {len(url)}")
    shown = shorten(url)
    if not url.isascii() or not url.isprintable() or " " in url:
        raise UrlError(f"must be printable ASCII without spaces, got {shown!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise UrlError(f"{shown!r}: {err}") from None
    if parts.scheme != "http":
        raise UrlError(f"{shown!r}: only http:// is supported")
    if "@" in parts.netloc:
        raise UrlError(f"{shown!r}: user info is not allowed")
    if parts.fragment or "#" in url:
        raise UrlError(f"{shown!r}: a fragment is not allowed")
    host = parts.hostname or ""
    why = host_error(host, allowed_hosts, allowed_name)
    if why:
        raise UrlError(f"{shown!r}: {why}")
    if port is not None and not 1 <= port <= 65535:
        raise UrlError(f"{shown!r}: port must be in [1, 65535]")
    return HttpUrl(url, host, port, parts.path, parts.query)


def host_error(host: str, allowed_hosts: Collection[str] | None = None,
               allowed_name: str = "allowed host") -> str | None:  # fmt: skip
    """Why ``host`` (lower case, no brackets) is refused, or None (module docstring)."""
    if not host:
        return "needs a host"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return None
    if allowed_hosts is not None:
        if host == "localhost" or host in {h.lower() for h in allowed_hosts}:
            return None
        return f"host {host} is not loopback nor an {allowed_name}"
    if ip is not None:
        return f"IP address {host} is not loopback (name the host)"
    labels = host.split(".")
    # The last label must start with a letter: "127.1", "2130706433" and "0x7f.1" are
    # IP addresses to the resolver, not names.
    if len(host) > 253 or not all(_LABEL.match(x) for x in labels) or not labels[-1][0].isalpha():
        return f"{host!r} is neither a loopback address nor a host name"
    return None


def shorten(url: str) -> str:
    """``url`` cut to 80 characters for an error message."""
    return url if len(url) <= 80 else url[:77] + "..."
