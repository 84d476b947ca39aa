"""``ProxyControl``: the runner's and the nemeses' handle on one fault proxy, from any
process (sync, stdlib ``http.client``; a new connection per call, so it is safe to
share between threads and survives a proxy restart)."""

from __future__ import annotations

import http.client
import json
from typing import Any

from conformance.harness.waiting import poll
from policies.core.errors import one_line


class ProxyControlError(Exception):
    """The control API refused a call (``status``: its HTTP status; 0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ProxyControl:
    """The control API at loopback ``address`` (``host:port``); ``link`` names the
    proxied link in errors (``envoy-xds``, ``sidecar-sink``, ...)."""

    def __init__(self, address: str, *, link: str = "proxy", timeout: float = 5.0) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.address = address
        self.link = link
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ProxyControl({self.address!r}, link={self.link!r})"

    def _call(self, method: str, path: str, doc: Any = None) -> Any:
        body = None if doc is None else json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"}  # the API's guard against web pages
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read(1 << 20)
            status = response.status
        except OSError as err:
            raise ProxyControlError(f"fault proxy {self.link} at {self.address}: "
                                    f"{one_line(err)}") from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if status >= 400:
            why = answer.get("error") if isinstance(answer, dict) else None
            raise ProxyControlError(f"fault proxy {self.link}: {method} {path}: "
                                    f"{one_line(why or status)}", status)
        return answer

    # -- toxics ---------------------------------------------------------------------------

    def add(self, kind: str, *, name: str | None = None, direction: str = "downstream",
            toxicity: float = 1.0, **attributes: int) -> dict[str, Any]:
        """Install a toxic; ``name`` defaults to ``<kind>_<direction>``. The toxic
        document as installed (defaults filled in)."""
        doc: dict[str, Any] = {"kind": kind, "direction": direction, "toxicity": toxicity,
                               "attributes": attributes}
        if name is not None:
            doc["name"] = name
        return self._call("POST", "/toxics", doc)

    def update(self, name: str, *, toxicity: float | None = None,
               **attributes: int) -> dict[str, Any]:
        """Change a toxic's toxicity and/or some attributes (the rest stay)."""
        doc: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            doc["toxicity"] = toxicity
        return self._call("POST", f"/toxics/{name}", doc)

    def remove(self, name: str) -> None:
        self._call("DELETE", f"/toxics/{name}")

    def toxics(self) -> list[dict[str, Any]]:
        return self._call("GET", "/toxics")

    # -- the proxy ------------------------------------------------------------------------

    def set_enabled(self, enabled: bool) -> dict[str, Any]:
        return self._call("POST", "/proxy", {"enabled": enabled})

    def disable(self) -> dict[str, Any]:
        """Down: open connections are cut and new ones refused."""
        return self.set_enabled(False)

    def enable(self) -> dict[str, Any]:
        return self.set_enabled(True)

    def reset(self) -> dict[str, Any]:
        """Every toxic removed and the proxy enabled (a scenario's repair-all)."""
        return self._call("POST", "/reset")

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/proxy")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def wait_ready(self, timeout: float = 10.0) -> dict[str, Any]:
        """Poll ``info()`` until the control API answers (a started proxy process);
        ``NotConverged`` after ``timeout``."""

        def attempt() -> dict[str, Any] | None:
            try:
                return self.info()
            except ProxyControlError as err:
                if err.status:
                    raise
                return None

        return poll(attempt, timeout, what=f"fault proxy {self.link} at {self.address}")
