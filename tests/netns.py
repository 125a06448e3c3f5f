"""Test hosts: network namespaces a test makes for itself, joined to this host by a veth pair.

    with test_host() as host:        # 10.213.N.1 here (host.host_ip), 10.213.N.2 there
        # a master listening on host.host_ip:port here; a worker and a client over there
        host.popen([sys.executable, "-m", "asphalt", "-master", f"{host.host_ip}:{port}"])
        status, headers, body = host.http("GET", f"http://{host.host_ip}:{port}/healthz")

The namespace is a second machine as far as the network goes: its own loopback, its own `eth0`
and nothing but the /30 link to this host (no default route), so a test can only reach what it
means to. `http()` and `run()` block; from an async test whose server runs on the same event
loop, call them through `asyncio.to_thread`. Needs root and iproute2; without them `test_host()`
raises `NetnsError` saying so, rather than skipping.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "asphalt-t"
SUBNET = "10.213"
NS_IFACE = "eth0"
# Held while a host picks its subnet and claims it, so concurrent test runs never share one.
LOCK_PATH = Path(tempfile.gettempdir()) / "asphalt-netns.lock"
IP_TIMEOUT_S = 30.0
END_TIMEOUT_S = 10.0


class NetnsError(RuntimeError):
    """A test host could not be made or removed."""


@dataclass(eq=False)
class NetnsHost:
    """One live test host; `test_host()` makes it and removes it."""

    __test__ = False  # not a test class, whatever module imports it

    name: str
    index: int
    host_veth: str
    """The name of this side of the veth pair, in the root namespace; unique across test runs."""
    _processes: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)

    @property
    def host_ip(self) -> str:
        """This (root namespace) side of the link: where a master on "this host" listens."""
        return f"{SUBNET}.{self.index}.1"

    @property
    def ns_ip(self) -> str:
        """The test host's side of the link: where something inside it listens."""
        return f"{SUBNET}.{self.index}.2"

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` as a command line that runs inside the namespace (for asyncio's subprocesses)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """`subprocess.run` inside the namespace; `timeout` defaults to 60 s."""
        kw.setdefault("timeout", 60)
        return subprocess.run(self.exec_argv(argv), **kw)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """`subprocess.Popen` inside the namespace; the process is ended when the host goes."""
        process: subprocess.Popen[Any] = subprocess.Popen(self.exec_argv(argv), **kw)
        self._processes.append(process)
        return process

    def http(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout_s: float = 30,
        cafile: str | Path | None = None,
        insecure: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP(S) request made from inside the namespace: `(status, headers, body)`.

        Any status is an answer (a 404 is returned, not raised); redirects are not followed and
        proxies are not used. Header names come back lower-cased, repeated headers joined with
        ", ". `cafile` is the certificate to trust (default: the system's); `insecure` checks
        nothing. A request that gets no answer raises `ConnectionError`, or `TimeoutError`.
        """
        if insecure and cafile is not None:
            raise ValueError("give cafile or insecure, not both")
        request = {
            "method": method,
            "url": url,
            "headers": headers or {},
            "body": None if body is None else base64.b64encode(body).decode(),
            "timeout_s": timeout_s,
            "cafile": None if cafile is None else str(cafile),
            "insecure": insecure,
        }
        # -I -S: the stdlib only, deaf to PYTHON* variables, and quick to start.
        argv = [sys.executable, "-I", "-S", "-c", _HTTP_SCRIPT]
        try:
            done = self.run(
                argv,
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=timeout_s + 30,
            )
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(f"{method} {url} from {self.name}: no answer in time") from e
        if done.returncode != 0:
            raise NetnsError(f"the request helper in {self.name} failed: {done.stderr.strip()}")
        answer = json.loads(done.stdout)
        if "error" in answer:
            failure = TimeoutError if answer["timeout"] else ConnectionError
            raise failure(f"{method} {url} from {self.name}: {answer['error']}")
        return answer["status"], answer["headers"], base64.b64decode(answer["body"])

    def close(self) -> None:
        """End the processes this host started, then remove the namespace and the veth pair."""
        try:
            for process in reversed(self._processes):
                _end(process)
        finally:
            self._processes.clear()
            self._remove()

    def _remove(self) -> None:
        failures: list[str] = []
        if self.name in _namespaces():
            failures += _try_ip("netns", "delete", self.name)
        # A process that outlived its namespace's name keeps the namespace, and so the pair,
        # alive; deleting this end removes both.
        if _link_exists(self.host_veth):
            failures += _try_ip("link", "delete", self.host_veth)
        if self.name in _namespaces() or _link_exists(self.host_veth):
            raise NetnsError(f"test host {self.name} could not be removed: {failures}")


@contextmanager
def test_host() -> Iterator[NetnsHost]:
    """A fresh test host for the duration of the block, removed even if the block fails."""
    host = _make()
    try:
        yield host
    finally:
        host.close()


test_host.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test to collect


def _make() -> NetnsHost:
    if os.geteuid() != 0:
        raise NetnsError("test hosts need root (ip netns needs CAP_SYS_ADMIN); run tests as root")
    if shutil.which("ip") is None:
        raise NetnsError("test hosts need iproute2 (the ip command): apt-get install iproute2")
    with _claim_lock():
        _remove_stale()
        pid, index = os.getpid(), _free_index()
        host = NetnsHost(name=f"{PREFIX}{pid}-{index}", index=index, host_veth=_veth(pid, index))
        try:
            _ip("netns", "add", host.name)
            _ip(
                "link", "add", host.host_veth, "type", "veth",
                "peer", "name", NS_IFACE, "netns", host.name,
            )  # fmt: skip
            _ip("addr", "add", f"{host.host_ip}/30", "dev", host.host_veth)
            _ip("link", "set", host.host_veth, "up")
            _ip("-n", host.name, "addr", "add", f"{host.ns_ip}/30", "dev", NS_IFACE)
            _ip("-n", host.name, "link", "set", NS_IFACE, "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
        except BaseException:
            host.close()
            raise
    return host


@contextmanager
def _claim_lock() -> Iterator[None]:
    with LOCK_PATH.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_index() -> int:
    """The lowest N whose 10.213.N.0/30 and names no interface, route or namespace uses."""
    used = {int(n) for n in re.findall(rf"\b{re.escape(SUBNET)}\.(\d+)\.", _ip("-o", "addr"))}
    used |= {int(n) for n in re.findall(rf"\b{re.escape(SUBNET)}\.(\d+)\.", _ip("route"))}
    used |= {int(n) for n in re.findall(r"^\d+: asp[0-9a-f]+-(\d+)[@:]", _ip("-o", "link"), re.M)}
    used |= {int(name.rsplit("-", 1)[1]) for name in _namespaces() if name.startswith(PREFIX)}
    for index in range(1, 255):
        if index not in used:
            return index
    raise NetnsError(f"every {SUBNET}.N.0/30 is taken; remove old namespaces (ip netns list)")


def _remove_stale() -> None:
    """Remove test hosts left by test runs that were killed before they could clean up."""
    for name in _namespaces():
        match = re.fullmatch(rf"{re.escape(PREFIX)}(\d+)-(\d+)", name)
        if not match or _alive(int(match[1])) or _ip("netns", "pids", name).strip():
            continue
        _ip("netns", "delete", name)
        veth = _veth(int(match[1]), int(match[2]))
        if _link_exists(veth):
            _ip("link", "delete", veth)


def _veth(pid: int, index: int) -> str:
    # Within the 15 characters a name may have, and never reused by another run while this one
    # checks that its own pair is gone.
    return f"asp{pid:x}-{index}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(END_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(END_TIMEOUT_S)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _namespaces() -> list[str]:
    # Lines read "name" or "name (id: 3)".
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def _link_exists(name: str) -> bool:
    done = subprocess.run(
        ["ip", "link", "show", "dev", name], capture_output=True, timeout=IP_TIMEOUT_S
    )
    return done.returncode == 0


def _try_ip(*args: str) -> list[str]:
    """Run `ip args`, returning what went wrong (nothing, if it worked)."""
    try:
        _ip(*args)
    except (NetnsError, subprocess.TimeoutExpired) as e:
        return [str(e)]
    return []


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


_HTTP_SCRIPT = r"""
import base64, json, ssl, sys, urllib.error, urllib.request

class KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

req = json.load(sys.stdin)
handlers = [urllib.request.ProxyHandler({}), KeepRedirects()]
if req["url"].lower().startswith("https:"):
    context = ssl.create_default_context(cafile=req["cafile"])
    if req["insecure"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    handlers.append(urllib.request.HTTPSHandler(context=context))
body = None if req["body"] is None else base64.b64decode(req["body"])
request = urllib.request.Request(
    req["url"], data=body, headers=req["headers"], method=req["method"]
)
try:
    try:
        response = urllib.request.build_opener(*handlers).open(request, timeout=req["timeout_s"])
    except urllib.error.HTTPError as e:
        response = e
    with response:
        data = response.read()
        headers = {}
        for name, value in response.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        status = response.status
except OSError as e:
    reason = getattr(e, "reason", e)
    error = f"{type(reason).__name__}: {reason}"
    json.dump({"error": error, "timeout": isinstance(reason, TimeoutError)}, sys.stdout)
else:
    answer = {"status": status, "headers": headers, "body": base64.b64encode(data).decode()}
    json.dump(answer, sys.stdout)
"""
