"""Servers that tests start themselves on 127.0.0.1, and how to reach them."""

import json
import socket
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process, timeout: float = 180.0, expect: bytes | None = None) -> None:
    """Polls `url` until it answers (with `expect`, if given); fails if `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            body = urllib.request.urlopen(url, timeout=2).read()
            if expect is None or body == expect:
                return
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


def endpoint_control(url: str, route: str, payload=None):
    """GET (or, with a payload, POST) one of the endpoint's `/_endpoint/` routes."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{url}/_endpoint/{route}", data=data, method="GET" if data is None else "POST")
    return json.loads(urllib.request.urlopen(request).read())
