"""The Docker API proxy (docker_api_proxy.py): its container as the `local` stack declares
it, and its allowlist, run for real.

HAProxy (Debian's package; `.ci/run` installs it) runs the rendered configuration,
with its backend pointed at a stub Docker Engine on a Unix socket that records every
request that gets through. Allowed calls must reach the stub; refused ones must get
403 and never reach it. The DockerOperator itself (docker-py underneath) runs a task
through the proxy, and is refused when it asks for privileged mode or a host mount;
the platform's housekeeping jobs remove a failed task container and an unused image
through it.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from etlstack import render
from etlstack.docker.docker_api_proxy import render_config
from pipeline_factory import PIPELINE_LABEL
from pipeline_factory.housekeeping import remove_failed_containers, remove_unused_images
from tests.support.polling import until
from tests.support.ports import free_port
from tests.support.stacks import TEST_SOCKET_GID, evaluate
from tests.unit.docker.containers import PREFIX, container, containers

PIPELINES = "etlstack-local-pipelines"
# The platform's registry, the only one images are pulled from.
REGISTRY = "127.0.0.1:5000"
IMAGE = "127.0.0.1:5000/etlstack/pipelines/weather@sha256:" + "a" * 64
CONTAINER_ID = "0123456789ab"
# What the stub's full image listing holds: an earlier release of the pipeline.
OLD_IMAGE: dict[str, Any] = {
    "Id": "sha256:" + "c" * 64,
    "RepoTags": ["127.0.0.1:5000/etlstack/pipelines/weather:earlier"],
    "RepoDigests": ["127.0.0.1:5000/etlstack/pipelines/weather@sha256:" + "b" * 64],
}
# The stub's only container: a task container that failed long ago.
FAILED_TASK = {
    "Id": CONTAINER_ID,
    "Name": "/weather-extract",
    "Image": IMAGE,
    "Config": {"Tty": False, "Labels": {PIPELINE_LABEL["docker"]: "weather"}},
    "State": {"Status": "exited", "ExitCode": 1, "FinishedAt": "2020-01-01T00:00:00.5Z"},
}


@dataclass
class Seen:
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, body: bytes) -> None:
        with self.lock:
            self.requests.append((method, path, body))

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


class _StubEngine(BaseHTTPRequestHandler):
    """Just enough of the Docker Engine API for docker-py and the DockerOperator."""

    protocol_version = "HTTP/1.1"
    seen: Seen

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: Any = None, raw: bytes | None = None) -> None:
        body = (
            raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.add(self.command, self.path, body)
        path = self.path.split("?")[0]
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        if path == "/_ping":
            self._reply(200, raw=b"OK")
        elif path == "/version":
            self._reply(200, {"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10"})
        elif path == "/images/json":
            # The operator looks its image up by reference and finds none, so it pulls.
            self._reply(200, [] if "filters=" in self.path else [OLD_IMAGE])
        elif path == "/system/df":
            self._reply(200, {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": []})
        elif path == "/containers/json":
            self._reply(200, [{"Id": CONTAINER_ID, "ImageID": "sha256:" + "d" * 64}])
        elif self.command == "DELETE" and path.startswith("/images/"):
            self._reply(200, [{"Untagged": path.removeprefix("/images/")}])
        elif path == "/images/create":
            self._reply(200, raw=b'{"status":"Downloaded newer image"}\r\n')
        elif path == "/containers/create":
            self._reply(201, {"Id": CONTAINER_ID, "Warnings": []})
        elif path.endswith("/attach"):
            # A hijacked stream, as the Engine answers an upgrade: one stdout frame.
            self.send_response(101, "UPGRADED")
            self.send_header("Content-Type", "application/vnd.docker.raw-stream")
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "tcp")
            self.end_headers()
            line = b"task output\n"
            self.wfile.write(b"\x01\x00\x00\x00" + len(line).to_bytes(4, "big") + line)
            self.wfile.flush()
            self.close_connection = True
        elif path.endswith("/wait"):
            self._reply(200, {"StatusCode": 0, "Error": None})
        elif path.endswith("/json"):
            self._reply(200, FAILED_TASK)
        else:
            self._reply(204)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _handle


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # HAProxy closing a finished connection first is not an error of the stub.
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)


@dataclass
class Proxy:
    port: int
    seen: Seen


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail(
            "haproxy is not installed: these tests run the proxy's real configuration; "
            "install it with `apt-get install -y haproxy`"
        )
    workdir = tmp_path_factory.mktemp("proxy")
    socket_path = workdir / "docker.sock"
    seen = Seen()
    handler = type("Handler", (_StubEngine,), {"seen": seen})
    server = _UnixServer(str(socket_path), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        render_config(
            PIPELINES, REGISTRY, listen=f"127.0.0.1:{port}", docker_socket=str(socket_path)
        )
    )
    check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    process = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    def listening() -> bool:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    try:
        until(listening, timeout=10, interval=0.05, what="haproxy listening", retry_on=(OSError,))
        yield Proxy(port=port, seen=seen)
    finally:
        process.terminate()
        process.wait(timeout=10)
        server.shutdown()
        server.server_close()


def _send(
    proxy: Proxy,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
) -> tuple[int, bool]:
    """(status, whether the stub engine saw the request)."""
    before = proxy.seen.count()
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if chunked:
            connection.request(
                method, path, body=iter([body or b""]), headers=all_headers, encode_chunked=True
            )
        else:
            connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        response.read()
        status = response.status
    finally:
        connection.close()
    return status, proxy.seen.count() > before


def task_container(**host_config: Any) -> dict[str, Any]:
    """A create body like the DockerOperator's, with extra HostConfig settings."""
    return {
        "Image": IMAGE,
        "Cmd": ["run_extract.sh"],
        "User": "50000",
        "Env": ["WAREHOUSE_URL=postgresql://warehouse:pw@postgres:5432/warehouse"],
        "Labels": {"etlstack.pipeline": "weather"},
        "HostConfig": {
            "NetworkMode": PIPELINES,
            "Memory": 536870912,
            "CpuShares": 1024,
            "AutoRemove": False,
            "Mounts": [],
            "LogConfig": {"Type": None, "Config": {}},
            **host_config,
        },
    }


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


ALLOWED: list[tuple[str, str, bytes | None]] = [
    ("GET", "/_ping", None),
    ("HEAD", "/_ping", None),
    ("GET", "/version", None),
    ("GET", "/v1.41/_ping", None),
    ("GET", "/v1.51/version", None),
    (
        "GET",
        "/v1.41/images/json?only_ids=0&all=0&filters=%7B%22reference%22%3A+%5B%22x%22%5D%7D",
        None,
    ),
    ("GET", "/v1.41/images/127.0.0.1:5000/etlstack/pipelines/weather%40sha256:abc/json", None),
    ("POST", "/v1.41/images/create?tag=1.0&fromImage=127.0.0.1%3A5000%2Fetlstack%2Fweather", None),
    (
        "POST",
        "/v1.41/images/create?fromImage=127.0.0.1:5000/etlstack/pipelines/weather%40sha256%3A"
        + "a" * 64,
        None,
    ),
    ("POST", "/v1.41/containers/create", _json(task_container())),
    ("POST", "/v1.41/containers/create?name=weather-extract", _json(task_container())),
    ("POST", "/containers/create", _json(task_container(NetworkMode="none"))),
    ("POST", "/containers/create", _json({**task_container(), "User": "1000:0"})),
    (
        "POST",
        "/v1.41/containers/create",
        _json(
            task_container(
                Mounts=[
                    {"Type": "tmpfs", "Target": "/tmp"},
                    {"Type": "volume", "Target": "/scratch", "Source": None},
                ],
                CapDrop=["ALL"],
                Privileged=False,
                Binds=None,
                SecurityOpt=[],
            )
        ),
    ),
    (
        "POST",
        "/containers/create",
        _json(task_container(SecurityOpt=["no-new-privileges"], CapDrop=["ALL"])),
    ),
    ("POST", "/containers/create", _json(task_container(SecurityOpt=["no-new-privileges:true"]))),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/start", None),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/wait", None),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/wait?condition=not-running", None),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/stop?t=10", None),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/kill?signal=SIGKILL", None),
    ("GET", f"/v1.41/containers/{CONTAINER_ID}/json", None),
    ("GET", f"/v1.41/containers/{CONTAINER_ID}/logs?stdout=1&stderr=1&follow=0&tail=all", None),
    ("DELETE", f"/v1.41/containers/{CONTAINER_ID}?v=False&link=False&force=True", None),
    # Housekeeping: the containers (docker-py's `containers(all=True, filters=...)`), and
    # a non-forced removal of an image of the platform's registry, by digest or tag.
    ("GET", "/v1.41/containers/json", None),
    (
        "GET",
        "/v1.41/containers/json?limit=-1&all=1&size=0&trunc_cmd=0"
        "&filters=%7B%22label%22%3A+%5B%22org.etlstack.pipeline%22%5D%7D",
        None,
    ),
    (
        "DELETE",
        "/v1.41/images/127.0.0.1:5000/etlstack/pipelines/weather%40sha256:"
        + "b" * 64
        + "?force=False&noprune=False",
        None,
    ),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/etlstack/pipelines/weather:earlier", None),
    ("DELETE", "/images/127.0.0.1:5000/etlstack/airflow:1.2?force=0", None),
    # Housekeeping's disk-usage report (docker-py's `df()`).
    ("GET", "/v1.41/system/df", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), ALLOWED, ids=[f"{m} {p}" for m, p, _ in ALLOWED]
)
def test_allowed_calls_reach_the_engine(
    proxy: Proxy, method: str, path: str, body: bytes | None
) -> None:
    status, forwarded = _send(proxy, method, path, body)
    assert status != 403
    assert forwarded


REFUSED_CALLS: list[tuple[str, str, bytes | None]] = [
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/exec", b'{"Cmd": ["sh"]}'),
    ("POST", "/v1.41/exec/abc/start", b"{}"),
    ("GET", f"/v1.41/containers/{CONTAINER_ID}/archive?path=/var/lib/postgresql/data", None),
    ("PUT", f"/v1.41/containers/{CONTAINER_ID}/archive?path=/", b"x"),
    ("GET", f"/v1.41/containers/{CONTAINER_ID}/export", None),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/update", b'{"Memory": 0}'),
    ("POST", "/v1.41/commit?container=abc", None),
    ("POST", "/v1.41/build", b""),
    ("POST", "/v1.41/networks/create", b'{"Name": "x"}'),
    ("POST", "/v1.41/networks/etlstack-local-platform/connect", b'{"Container": "abc"}'),
    ("POST", "/v1.41/volumes/create", b'{"Name": "x"}'),
    ("GET", "/v1.41/info", None),
    ("GET", "/v1.41/system/df?verbose=1", None),
    ("GET", "/v1.41/system/info", None),
    ("POST", "/v1.41/system/df", None),
    ("GET", "/v1.41/events", None),
    ("POST", "/v1.41/containers/prune", None),
    ("POST", "/v1.41/images/prune", None),
    # Listing containers: only docker-py's parameters, literally named, never sizes.
    ("GET", "/v1.41/containers/json?all=1&size=1", None),
    ("GET", "/v1.41/containers/json?size=true", None),
    ("GET", "/v1.41/containers/json?%73ize=1", None),
    ("GET", "/v1.41/containers/json?all=1&since=abc", None),
    ("GET", "/v1.41/containers/json?all=1;size=1", None),
    ("GET", "/v1.41/containers/json?all=yes", None),
    ("POST", "/v1.41/containers/json", None),
    # Removing images: only the platform registry's, by tag or digest, never forced.
    ("DELETE", "/v1.41/images/postgres:16", None),
    ("DELETE", "/v1.41/images/docker.io/library/postgres:16", None),
    ("DELETE", "/v1.41/images/sha256:" + "c" * 64, None),
    ("DELETE", "/v1.41/images/" + "c" * 64, None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000.evil.example/x:1", None),
    ("DELETE", "/v1.41/images/127.0.0.1:50001/x:1", None),
    ("DELETE", "/v1.41/images/localhost:5000/x:1", None),
    ("DELETE", "/v1.41/images/evil.example/127.0.0.1:5000/x:1", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/../../postgres:16", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000%2F..%2F..%2Fpostgres:16", None),
    ("DELETE", "/v1.41/images/127.0.0.1%3A5000/x:1", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x%2540sha256:" + "b" * 64, None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x%40sha256:" + "b" * 63, None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x:1?force=1", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x:1?force=true", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x:1?force=True&noprune=False", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x:1?force=yes", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x:1?force=False&force=1", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x:1?force=%31", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x:1?%66orce=1", None),
    ("DELETE", "/v1.41/images/127.0.0.1:5000/x:1?force=False;force=1", None),
    ("POST", "/v1.41/images/load", b""),
    ("POST", "/v1.41/swarm/init", b"{}"),
    ("GET", "/v1.41/secrets", None),
    ("POST", "/v1.41/plugins/pull?remote=x", None),
    ("POST", "/v1.41/session", None),
    # Importing a tarball as an image, not pulling one.
    ("POST", "/v1.41/images/create?fromSrc=-&repo=x", b""),
    ("POST", "/v1.41/images/create?fromImage=x&fromSrc=-", None),
    ("POST", "/v1.41/images/create?tag=1", None),
    # Pulls from anywhere but the platform's registry: the engine connects from the
    # host's network, host loopback included, and echoes the reply in its error.
    ("POST", "/v1.41/images/create?fromImage=alpine&tag=3.20", None),
    ("POST", "/v1.41/images/create?fromImage=docker.io%2Flibrary%2Falpine", None),
    ("POST", "/v1.41/images/create?fromImage=127.0.0.1%3A2375%2Fx", None),
    ("POST", "/v1.41/images/create?fromImage=127.0.0.1%3A5000.evil.example%2Fx", None),
    ("POST", "/v1.41/images/create?fromImage=127.0.0.1%3A50001%2Fx", None),
    ("POST", "/v1.41/images/create?fromImage=localhost%3A5000%2Fx", None),
    ("POST", "/v1.41/images/create?fromImage=127.0.0.1%3A5000%2Fx+y", None),
    ("POST", "/v1.41/images/create?fromImage=127.0.0.1%253A5000%252Fx", None),
    ("POST", "/v1.41/images/create?fromImage=evil.example%2F127.0.0.1%3A5000%2Fx", None),
    ("POST", "/v1.41/images/create?fromImage=&fromImage=127.0.0.1%3A5000%2Fx", None),
    # Registry logins: the platform never makes one, and one to another host is a probe.
    ("POST", "/v1.41/auth", b'{"username": "etlstack", "password": "pw"}'),
    ("POST", "/v1.41/auth", b'{"serveraddress": "127.0.0.1:6379"}'),
    # stdin of another container, directly or with an encoded parameter name.
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/attach?stream=1&stdin=1", None),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/attach?stream=1&%73tdin=1", None),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/start?detachKeys=ctrl-x", None),
    # API versions before 1.24 took a host configuration in the start call's body.
    ("POST", f"/v1.23/containers/{CONTAINER_ID}/start", b'{"Privileged": true}'),
    ("GET", "/v1.12/_ping", None),
    ("POST", f"/v1.41/containers/{CONTAINER_ID}/start", b'{"Privileged": true}'),
    # Paths that only look allowed.
    ("GET", f"/v1.41/containers/{CONTAINER_ID}/../../info/json", None),
    ("GET", "/v1.41/images/x%2F..%2F..%2Fcontainers%2Fabc%2Farchive/json", None),
    ("GET", "/v1.41/images/x/../../containers/abc/json", None),
    ("GET", "/v1.41/images/./json", None),
    ("GET", "/V1.41/_ping", None),
    ("PATCH", "/_ping", None),
    ("OPTIONS", "/_ping", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), REFUSED_CALLS, ids=[f"{m} {p}" for m, p, _ in REFUSED_CALLS]
)
def test_other_calls_are_refused(proxy: Proxy, method: str, path: str, body: bytes | None) -> None:
    assert _send(proxy, method, path, body) == (403, False)


def _raw(text: str) -> bytes:
    """A JSON body written by hand, to spell keys the way an attacker would."""
    return text.encode()


def _with(key_and_value: str) -> bytes:
    """A valid task container body with one more HostConfig member, as raw JSON text."""
    document = json.dumps(task_container())
    return _raw(document.replace('"HostConfig": {', '"HostConfig": {' + key_and_value + ", ", 1))


REFUSED_CREATES: dict[str, bytes] = {
    "privileged": _with('"Privileged": true'),
    "privileged lower case": _with('"privileged": true'),
    "privileged odd case and spacing": _with('"pRiViLeGeD"\n :\ttrue'),
    "privileged as a duplicate key": _raw(
        json.dumps(task_container(Privileged=False))[:-2] + ', "Privileged": true}}'
    ),
    "privileged with a unicode escape in the key": _with('"Privil\\u0065ged": true'),
    "bind with U+017F folding to s": _with('"Bind\u017f": ["/:/host"]'),
    "key with U+212A folding to k": _with('"Lin\u212as": ["etlstack-local-postgres:db"]'),
    "host bind": _with('"Binds": ["/:/host"]'),
    "host bind, any case": _with('"BINDS": ["/var/run/docker.sock:/var/run/docker.sock"]'),
    "bind mount": _raw(
        json.dumps(task_container(Mounts=[{"Type": "bind", "Source": "/", "Target": "/host"}]))
    ),
    "bind mount, odd case": _raw(
        json.dumps(task_container(Mounts=[{"tYpE": "BIND", "source": "/", "Target": "/host"}]))
    ),
    "the database's named volume": _raw(
        json.dumps(
            task_container(
                Mounts=[
                    {"Type": "volume", "Source": "etlstack-local-postgres-data", "Target": "/d"}
                ]
            )
        )
    ),
    "volume driver binding a host path": _raw(
        json.dumps(
            task_container(
                Mounts=[
                    {
                        "Type": "volume",
                        "Target": "/host",
                        "VolumeOptions": {
                            "DriverConfig": {
                                "Name": "local",
                                "Options": {"type": "none", "o": "bind", "device": "/"},
                            }
                        },
                    }
                ]
            )
        )
    ),
    "volume driver": _with('"VolumeDriver": "local"'),
    "volumes from another container": _with('"VolumesFrom": ["etlstack-local-postgres"]'),
    "host network": _raw(json.dumps(task_container(NetworkMode="host"))),
    "another container's network": _raw(json.dumps(task_container(NetworkMode="container:abc"))),
    "the platform network": _raw(json.dumps(task_container(NetworkMode="etlstack-local-platform"))),
    "the Docker API network": _raw(
        json.dumps(task_container(NetworkMode="etlstack-local-docker-api"))
    ),
    "the default bridge": _raw(json.dumps(task_container(NetworkMode="default"))),
    "a network name that only starts like the pipelines one": _raw(
        json.dumps(task_container(NetworkMode=PIPELINES + "-x"))
    ),
    "network mode as a duplicate key": _raw(
        json.dumps(task_container())[:-2] + ', "NetworkMode": "host"}}'
    ),
    "no network mode": _raw(
        json.dumps(task_container()).replace(f'"NetworkMode": "{PIPELINES}", ', "")
    ),
    "extra networks at create": _raw(
        json.dumps(
            {
                **task_container(),
                "NetworkingConfig": {"EndpointsConfig": {"etlstack-local-platform": {}}},
            }
        )
    ),
    "host pid namespace": _with('"PidMode": "host"'),
    "another container's pid namespace": _with('"PidMode": "container:abc"'),
    "host ipc namespace": _with('"IpcMode": "host"'),
    "host uts namespace": _with('"UTSMode": "host"'),
    "host user namespace": _with('"UsernsMode": "host"'),
    "host cgroup namespace": _with('"CgroupnsMode": "host"'),
    "added capability": _with('"CapAdd": ["SYS_ADMIN"]'),
    "added capability, odd case": _with('"capADD": ["ALL"]'),
    "devices": _with(
        '"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", '
        '"CgroupPermissions": "rwm"}]'
    ),
    "device requests": _with('"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]'),
    "device cgroup rules": _with('"DeviceCgroupRules": ["a *:* rwm"]'),
    "security options": _with('"SecurityOpt": ["seccomp=unconfined"]'),
    "apparmor off": _with('"securityopt": ["apparmor=unconfined"]'),
    "no-new-privileges beside a loosening option": _with(
        '"SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]'
    ),
    "no-new-privileges switched off": _with('"SecurityOpt": ["no-new-privileges:false"]'),
    "unmasked /proc": _with('"MaskedPaths": []'),
    "writable /proc/sys": _with('"ReadonlyPaths": []'),
    "sysctls": _with('"Sysctls": {"net.ipv4.ip_forward": "1"}'),
    "published ports": _with(
        '"PortBindings": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]}'
    ),
    "all ports published": _with('"PublishAllPorts": true'),
    "links": _with('"Links": ["etlstack-local-postgres:db"]'),
    "another runtime": _with('"Runtime": "sysbox-runc"'),
    "another cgroup parent": _with('"CgroupParent": "/"'),
    "another cgroup": _with('"Cgroup": "container:abc"'),
    "runtime annotations": _with('"Annotations": {"run.oci.keep_original_groups": "1"}'),
    "log shipping elsewhere": _raw(
        json.dumps(
            task_container(LogConfig={"Type": "syslog", "Config": {"syslog-address": "udp://x:1"}})
        )
    ),
    "root user": _raw(json.dumps({**task_container(), "User": "root"})),
    "root uid and gid": _raw(json.dumps({**task_container(), "User": "0:0"})),
    "root uid spelled 00": _raw(json.dumps({**task_container(), "User": "00"})),
    "root uid spelled +0": _raw(json.dumps({**task_container(), "User": "+0:1000"})),
    "first for the OOM killer": _with('"OomScoreAdj": -1000'),
    "non-ASCII anywhere": _raw(
        json.dumps({**task_container(), "Env": ["CITY=Zürich"]}, ensure_ascii=False)
    ),
    "a NUL byte": _raw(json.dumps(task_container())[:-1] + "\x00}"),
}


@pytest.mark.parametrize("body", REFUSED_CREATES.values(), ids=REFUSED_CREATES.keys())
def test_container_creates_that_escape_the_sandbox_are_refused(proxy: Proxy, body: bytes) -> None:
    assert _send(proxy, "POST", "/v1.41/containers/create", body) == (403, False)


def test_a_body_larger_than_the_inspection_buffer_is_refused(proxy: Proxy) -> None:
    # The forbidden setting sits past the first 64 KiB: a proxy that judged only what
    # fits in its buffer would let it through.
    document = task_container()
    document["Env"] = [f"PAD{i}=" + "x" * 1000 for i in range(80)]
    body = json.dumps(document)[:-2] + ', "Privileged": true}}'
    assert _send(proxy, "POST", "/v1.41/containers/create", body.encode()) == (403, False)
    # The same task without the padding is fine: the size alone decides.
    small = json.dumps(task_container()).encode()
    assert _send(proxy, "POST", "/v1.41/containers/create", small)[1]


def test_bodies_are_limited_to_48_kib(proxy: Proxy) -> None:
    def body_of(size: int) -> bytes:
        document = task_container()
        document["Env"].append("PAD=")
        text = json.dumps(document)
        return text.replace('"PAD="', '"PAD=' + "x" * (size - len(text)) + '"').encode()

    assert len(body_of(49152)) == 49152
    assert _send(proxy, "POST", "/v1.41/containers/create", body_of(49152))[1]
    assert _send(proxy, "POST", "/v1.41/containers/create", body_of(49153)) == (403, False)


def test_a_chunked_body_is_refused(proxy: Proxy) -> None:
    body = _json(task_container())
    assert _send(proxy, "POST", "/v1.41/containers/create", body, chunked=True) == (403, False)


def test_a_compressed_body_is_refused(proxy: Proxy) -> None:
    body = _json(task_container())
    headers = {"Content-Encoding": "gzip"}
    assert _send(proxy, "POST", "/v1.41/containers/create", body, headers) == (403, False)


def test_a_body_on_a_call_that_takes_none_is_refused(proxy: Proxy) -> None:
    path = f"/v1.41/containers/{CONTAINER_ID}/wait"
    assert _send(proxy, "POST", path, b'{"HostConfig": {}}') == (403, False)


def _operator(proxy: Proxy, **overrides: Any) -> Any:
    from airflow.providers.docker.operators.docker import DockerOperator

    settings: dict[str, Any] = {
        "task_id": "extract",
        "image": IMAGE,
        "command": ["run_extract.sh"],
        "docker_url": f"tcp://127.0.0.1:{proxy.port}",
        "network_mode": PIPELINES,
        "mount_tmp_dir": False,
        "user": "50000",
        "mem_limit": "512m",
        "private_environment": {"WAREHOUSE_URL": "postgresql://warehouse:pw@postgres/warehouse"},
        "auto_remove": "success",
        **overrides,
    }
    return DockerOperator(**settings)


def test_the_docker_operator_runs_a_task_through_the_proxy(proxy: Proxy) -> None:
    before = proxy.seen.count()
    # The stub has no images, so the operator looks the image up, pulls it, then runs it.
    _operator(proxy).execute(context={})
    calls = [(m, p.split("?")[0].split("/", 2)[-1]) for m, p, _ in proxy.seen.requests[before:]]
    for expected in [
        ("GET", "version"),
        ("GET", "_ping"),
        ("GET", "images/json"),
        ("POST", "images/create"),
        ("POST", "containers/create"),
        ("GET", f"containers/{CONTAINER_ID}/json"),
        ("POST", f"containers/{CONTAINER_ID}/attach"),
        ("POST", f"containers/{CONTAINER_ID}/start"),
        ("POST", f"containers/{CONTAINER_ID}/wait"),
        ("DELETE", f"containers/{CONTAINER_ID}"),
    ]:
        assert expected in calls, f"{expected} did not reach the engine: {calls}"
    created = next(
        json.loads(body)
        for method, path, body in proxy.seen.requests[before:]
        if path.split("?")[0].endswith("/containers/create")
    )
    assert created["HostConfig"]["NetworkMode"] == PIPELINES


@pytest.mark.parametrize(
    "escape",
    [
        {"privileged": True},
        {"mounts": [{"Target": "/host", "Source": "/", "Type": "bind"}]},
        {"cap_add": ["SYS_ADMIN"]},
        {"network_mode": "host"},
        {"ipc_mode": "host"},
    ],
    ids=["privileged", "host bind mount", "added capability", "host network", "host ipc"],
)
def test_the_docker_operator_is_refused_when_it_asks_for_the_host(
    proxy: Proxy, escape: dict[str, Any]
) -> None:
    from docker.errors import APIError

    before = proxy.seen.count()
    with pytest.raises(APIError) as refused:
        _operator(proxy, **escape).execute(context={})
    assert refused.value.status_code == 403
    assert not any(
        path.split("?")[0].endswith("/containers/create")
        for _, path, _ in proxy.seen.requests[before:]
    )


def _client(proxy: Proxy) -> Any:
    from docker import APIClient

    return APIClient(base_url=f"tcp://127.0.0.1:{proxy.port}", version="1.41")


def _reached(proxy: Proxy, before: int) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in proxy.seen.requests[before:]]


def test_housekeeping_removes_a_failed_task_container_through_the_proxy(proxy: Proxy) -> None:
    before = proxy.seen.count()
    removed = remove_failed_containers(_client(proxy), datetime.now(UTC))
    assert removed == ["weather-extract"]
    calls = [(m, p.split("?")[0].removeprefix("/v1.41")) for m, p in _reached(proxy, before)]
    assert ("GET", "/containers/json") in calls
    assert ("DELETE", f"/containers/{CONTAINER_ID}") in calls


def test_housekeeping_removes_an_unused_registry_image_through_the_proxy(proxy: Proxy) -> None:
    before = proxy.seen.count()
    removed = remove_unused_images(_client(proxy), [IMAGE])
    assert removed == OLD_IMAGE["RepoDigests"] + OLD_IMAGE["RepoTags"]
    deletes = [path for method, path in _reached(proxy, before) if method == "DELETE"]
    assert len(deletes) == len(removed)


def test_a_forced_or_foreign_image_removal_is_refused(proxy: Proxy) -> None:
    from docker.errors import APIError

    client = _client(proxy)
    before = proxy.seen.count()
    for image, force in [(OLD_IMAGE["RepoTags"][0], True), ("postgres:16", False)]:
        with pytest.raises(APIError) as refused:
            client.remove_image(image, force=force)
        assert refused.value.status_code == 403
    assert not any(method == "DELETE" for method, _ in _reached(proxy, before))


def test_the_template_has_no_unrendered_placeholders() -> None:
    assert "@" not in render_config(PIPELINES, REGISTRY).replace("%40", "").replace("@sha256", "")


def test_the_deployed_configuration_is_the_tested_one_with_production_endpoints() -> None:
    deployed = render_config(PIPELINES, REGISTRY)
    tested = render_config(PIPELINES, REGISTRY, listen="127.0.0.1:1", docker_socket="/tmp/x.sock")
    assert "bind :2375\n" in deployed
    assert "server engine /var/run/docker.sock\n" in deployed
    assert (
        deployed.replace("bind :2375", "bind 127.0.0.1:1").replace(
            "/var/run/docker.sock", "/tmp/x.sock"
        )
        == tested
    )


def test_haproxy_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is not installed; apt-get install -y haproxy"
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(PIPELINES, REGISTRY))
    check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# --- The proxy's container, as the local stack declares it ------------------------


def test_only_the_proxy_mounts_the_docker_socket(local: render.Evaluation) -> None:
    socket_path = local.config.docker.socket_path
    mounting = {
        name
        for name, r in containers(local).items()
        if socket_path in json.dumps(render.mask(r.inputs.get("mounts", [])))
        or socket_path in json.dumps(render.mask(r.inputs.get("volumes", [])))
        or "docker.sock" in json.dumps(render.mask(r.inputs.get("mounts", [])))
    }
    assert mounting == {f"{PREFIX}-docker-api-proxy"}


def test_the_proxy_reaches_the_socket_through_its_group_not_as_root(
    local: render.Evaluation,
) -> None:
    proxy = container(local, "docker-api-proxy").inputs
    assert proxy["mounts"] == [
        {
            "type": "bind",
            "source": local.config.docker.socket_path,
            "target": "/var/run/docker.sock",
            "readOnly": True,
        }
    ]
    assert proxy["groupAdds"] == [str(TEST_SOCKET_GID)]
    assert proxy["user"] == "haproxy"
    assert proxy.get("privileged") in (None, False)
    assert proxy["capabilities"] == {"drops": ["ALL"]}
    assert not proxy.get("ports")


def test_the_socket_group_comes_from_configuration() -> None:
    evaluation = evaluate("local", docker={"socketGid": 4242})
    assert container(evaluation, "docker-api-proxy").inputs["groupAdds"] == ["4242"]


def test_the_proxy_runs_the_allowlist_for_this_stacks_pipelines_network(
    local: render.Evaluation,
) -> None:
    proxy = container(local, "docker-api-proxy").inputs
    (upload,) = proxy["uploads"]
    assert upload["file"] == "/usr/local/etc/haproxy/haproxy.cfg"
    assert upload["content"] == render_config(
        f"{PREFIX}-pipelines", f"127.0.0.1:{local.config.docker.ports.registry}"
    )
    assert proxy["command"][-2:] == ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]
