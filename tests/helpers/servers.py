"""Servers that tests start themselves on 127.0.0.1, and how to reach them."""

import json
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

LOCAL_URL = re.compile(rb"http://127\.0\.0\.1:(\d+)")


def free_port() -> int:
    """A port free a moment ago: another process may take it before the caller binds it. Prefer a
    server that binds port 0 and says which port it got (`start_reporting_its_url`), or retry
    (`start_on_a_free_port`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_reporting_its_url(command: list[str], output: Path, timeout: float = 120.0,
                            **popen) -> tuple[subprocess.Popen, str]:
    """Starts a server told to bind port 0 (so no other process can take its port first) and
    returns it with the `http://127.0.0.1:<port>` URL it prints, read from its output (stdout and
    stderr, in the file `output`: a pipe nobody drains would stall a chatty server)."""
    with open(output, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, **popen)
    deadline = time.monotonic() + timeout
    while not (found := LOCAL_URL.search(output.read_bytes())):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"{' '.join(command)} printed no URL; its output:\n{output.read_text()[-2000:]}")
        time.sleep(0.1)
    return process, found.group(0).decode()


def start_on_a_free_port(start: Callable[[int], subprocess.Popen], ready_url: Callable[[int], str],
                         attempts: int = 3, **wait) -> tuple[subprocess.Popen, int]:
    """For a server that cannot report the port it bound: starts it on a free port and, if it
    exits before answering (another process took the port meanwhile), again on another."""
    for attempt in range(attempts):
        port = free_port()
        process = start(port)
        try:
            wait_until_up(ready_url(port), process, **wait)
            return process, port
        except RuntimeError:
            process.wait(timeout=30)
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


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
