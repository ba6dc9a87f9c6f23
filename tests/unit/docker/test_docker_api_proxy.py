"""The Docker API proxy (docker_api_proxy.py): its container as the `local` stack declares
it, and its allowlist, run for real.

HAProxy 3.0, the major the stack deploys (Debian 13's, in the end-to-end run's stand-in
image, run on the Docker Engine by tests/support/haproxy.py), runs the rendered
configuration, with its backend pointed at a stub Docker Engine on a Unix socket that
records every request that gets through. Allowed calls must reach the stub; refused ones must get
403 and never reach it. The DockerOperator itself (docker-py underneath) runs a task
through the proxy, and is refused when it asks for privileged mode or a host mount;
the platform's housekeeping jobs remove a failed task container and an unused image
through it.
"""

from __future__ import annotations

import http.client
import json
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from etlstack import render
from etlstack.docker.docker_api_proxy import (
    CREATE_JUDGE,
    JUDGE_PATH,
    TaskContainerRules,
    render_config,
)
from pipeline_factory import PIPELINE_LABEL
from pipeline_factory.housekeeping import remove_failed_containers, remove_unused_images
from tests.support import haproxy
from tests.support.ports import free_port
from tests.support.stacks import TEST_SOCKET_GID, evaluate
from tests.unit.docker.containers import PREFIX, container, containers, env

PIPELINES = "etlstack-local-pipelines"
# The platform's registry, the only one images are pulled from.
REGISTRY = "127.0.0.1:5000"
# The local stack's rules (Pulumi.local.yaml: taskResources 1 CPU, 512Mi).
RULES = TaskContainerRules(
    network=PIPELINES,
    registry=REGISTRY,
    name_prefix=f"{PREFIX}-task-",
    max_memory=512 * 2**20,
    max_nano_cpus=10**9,
)
IMAGE = "127.0.0.1:5000/etlstack/pipelines/weather@sha256:" + "a" * 64
CONTAINER_ID = "0123456789ab" * 5 + "cdef"
# What the platform's launch names a task container, and how later calls reach it.
TASK = f"{PREFIX}-task-" + "0123456789abcdef" * 2
# What the stub's full image listing holds: an earlier release of the pipeline.
OLD_IMAGE: dict[str, Any] = {
    "Id": "sha256:" + "c" * 64,
    "RepoTags": ["127.0.0.1:5000/etlstack/pipelines/weather:earlier"],
    "RepoDigests": ["127.0.0.1:5000/etlstack/pipelines/weather@sha256:" + "b" * 64],
}
# The stub's only container: a task container that failed long ago.
FAILED_TASK = {
    "Id": CONTAINER_ID,
    "Name": f"/{TASK}",
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
            self._reply(
                200,
                [{"Id": CONTAINER_ID, "Names": [f"/{TASK}"], "ImageID": "sha256:" + "d" * 64}],
            )
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
    haproxy: haproxy.HAProxy

    def logs(self) -> str:
        """HAProxy's log so far: one line per request, naming the rule a refusal broke.

        A request's line lands a moment after its response: to assert on one, wait for
        it with self.haproxy.line_with(text).
        """
        return self.haproxy.logs()


@contextmanager
def _running_proxy(workdir: Path, judge_source: str) -> Iterator[Proxy]:
    """The proxy's configuration in HAProxy, with `judge_source` as create_judge.lua, in
    front of a stub engine."""
    # Everything HAProxy reads goes in this one directory, which its container sees at
    # the same path (tests/support/haproxy.py): the stub engine's socket and the files
    # written below.
    socket_path = workdir / "docker.sock"
    seen = Seen()
    handler = type("Handler", (_StubEngine,), {"seen": seen})
    server = _UnixServer(str(socket_path), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    port = free_port()
    config = workdir / "haproxy.cfg"
    judge = workdir / "create_judge.lua"
    judge.write_text(judge_source)
    config.write_text(
        render_config(
            RULES,
            listen=f"127.0.0.1:{port}",
            docker_socket=str(socket_path),
            judge_path=str(judge),
        )
    )
    try:
        with haproxy.serve(workdir, config, port=port) as running:
            yield Proxy(port=port, seen=seen, haproxy=running)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with _running_proxy(tmp_path_factory.mktemp("proxy"), CREATE_JUDGE.read_text()) as running:
        yield running


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
    """A create body like the platform launch's, with extra HostConfig settings."""
    return {
        "Image": IMAGE,
        "Cmd": ["run_extract.sh"],
        "User": "10001:10001",
        "Env": ["WAREHOUSE_URL=postgresql://warehouse:pw@postgres:5432/warehouse"],
        "Labels": {"etlstack.pipeline": "weather"},
        "HostConfig": {
            "NetworkMode": PIPELINES,
            "Memory": 536870912,
            "NanoCpus": 10**9,
            "CpuShares": 1024,
            "PidsLimit": 1024,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "CgroupnsMode": "private",
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10000000", "max-file": "3"}},
            "AutoRemove": False,
            "Mounts": [],
            **host_config,
        },
    }


CREATE = f"/v1.41/containers/create?name={TASK}"


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
    (
        "POST",
        CREATE,
        _json(
            {
                # What the launch through docker-py sends, nulls and all.
                **task_container(),
                "Hostname": None,
                "Tty": False,
                "OpenStdin": False,
                "AttachStdout": True,
                "ExposedPorts": {},
                "NetworkingConfig": None,
                "Healthcheck": None,
                "MacAddress": None,
            }
        ),
    ),
    ("POST", CREATE, _json(task_container(NetworkMode="none"))),
    ("POST", CREATE, _json({**task_container(), "User": "1000"})),
    (
        "POST",
        CREATE,
        _json(
            task_container(
                Mounts=[
                    {"Type": "tmpfs", "Target": "/tmp"},
                    {"Type": "volume", "Target": "/scratch", "Source": None},
                ],
                Privileged=False,
                Binds=None,
                PidsLimit=1,
                Memory=1,
                RestartPolicy={"Name": "no", "MaximumRetryCount": 0},
                LogConfig={"Type": "local", "Config": {"max-size": "10m"}},
            )
        ),
    ),
    ("POST", CREATE, _json(task_container(SecurityOpt=["no-new-privileges:true"]))),
    ("POST", f"/v1.41/containers/{TASK}/start", None),
    ("POST", f"/v1.41/containers/{TASK}/wait", None),
    ("POST", f"/v1.41/containers/{TASK}/wait?condition=not-running", None),
    ("POST", f"/v1.41/containers/{TASK}/stop?t=10", None),
    ("POST", f"/v1.41/containers/{TASK}/kill?signal=SIGKILL", None),
    ("GET", f"/v1.41/containers/{TASK}/json", None),
    ("GET", f"/v1.41/containers/{TASK}/logs?stdout=1&stderr=1&follow=0&tail=all", None),
    ("POST", f"/v1.41/containers/{TASK}/attach?stdout=1&stderr=1&stream=1", None),
    ("DELETE", f"/v1.41/containers/{TASK}?v=False&link=False&force=True", None),
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
    status, forwarded, message = _exchange(proxy, method, path, body)
    assert (status != 403, forwarded) == (True, True), message


REFUSED_CALLS: list[tuple[str, str, bytes | None]] = [
    ("POST", f"/v1.41/containers/{TASK}/exec", b'{"Cmd": ["sh"]}'),
    ("POST", "/v1.41/exec/abc/start", b"{}"),
    ("GET", f"/v1.41/containers/{TASK}/archive?path=/var/lib/postgresql/data", None),
    ("PUT", f"/v1.41/containers/{TASK}/archive?path=/", b"x"),
    ("GET", f"/v1.41/containers/{TASK}/export", None),
    ("POST", f"/v1.41/containers/{TASK}/update", b'{"Memory": 0}'),
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
    ("POST", f"/v1.41/containers/{TASK}/attach?stream=1&stdin=1", None),
    ("POST", f"/v1.41/containers/{TASK}/attach?stream=1&%73tdin=1", None),
    ("POST", f"/v1.41/containers/{TASK}/start?detachKeys=ctrl-x", None),
    # API versions before 1.24 took a host configuration in the start call's body.
    ("POST", f"/v1.23/containers/{TASK}/start", b'{"Privileged": true}'),
    ("GET", "/v1.12/_ping", None),
    ("POST", f"/v1.41/containers/{TASK}/start", b'{"Privileged": true}'),
    # Paths that only look allowed.
    ("GET", f"/v1.41/containers/{TASK}/../../info/json", None),
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


def _document(**changes: Any) -> bytes:
    """A valid task container body with top-level fields changed (None removes one)."""
    document = {**task_container(), **changes}
    return _raw(json.dumps({k: v for k, v in document.items() if v is not None}))


def _without(*host_config: str) -> bytes:
    """A valid task container body without these HostConfig fields."""
    document = task_container()
    for key in host_config:
        del document["HostConfig"][key]
    return _raw(json.dumps(document))


# Each create the proxy must refuse, and the part of its answer that names the rule.
REFUSED_CREATES: dict[str, tuple[bytes, str]] = {
    # Escapes from the sandbox, however the key is spelled.
    "privileged": (_with('"Privileged": true'), "HostConfig.Privileged must be absent"),
    "privileged lower case": (_with('"privileged": true'), "HostConfig.privileged must be absent"),
    "privileged odd case and spacing": (_with('"pRiViLeGeD"\n :\ttrue'), "HostConfig.pRiViLeGeD"),
    "privileged as a duplicate key": (
        _raw(json.dumps(task_container(Privileged=False))[:-2] + ', "Privileged": true}}'),
        'the key "Privileged" appears twice',
    ),
    "privileged in another case as a duplicate key": (
        _raw(json.dumps(task_container(privileged=False))[:-2] + ', "PRIVILEGED": true}}'),
        'the key "PRIVILEGED" appears twice',
    ),
    "privileged with a unicode escape in the key": (
        _with('"Privil\\u0065ged": true'),
        "escape sequence",
    ),
    "bind with U+017F folding to s": (_with('"Bind\u017f": ["/:/host"]'), "printable ASCII"),
    "key with U+212A folding to k": (
        _with('"Lin\u212as": ["etlstack-local-postgres:db"]'),
        "printable ASCII",
    ),
    "host bind": (_with('"Binds": ["/:/host"]'), "HostConfig.Binds must be absent"),
    "host bind, any case": (
        _with('"BINDS": ["/var/run/docker.sock:/var/run/docker.sock"]'),
        "HostConfig.BINDS must be absent",
    ),
    "bind mount": (
        _raw(json.dumps(task_container(Mounts=[{"Type": "bind", "Source": "/", "Target": "/h"}]))),
        "HostConfig.Mounts[0].",
    ),
    "bind mount, odd case": (
        _raw(json.dumps(task_container(Mounts=[{"tYpE": "BIND", "Target": "/host"}]))),
        "HostConfig.Mounts[0].tYpE must be",
    ),
    "the database's named volume": (
        _raw(
            json.dumps(
                task_container(
                    Mounts=[
                        {"Type": "volume", "Source": "etlstack-local-postgres-data", "Target": "/d"}
                    ]
                )
            )
        ),
        "HostConfig.Mounts[0].Source must be absent",
    ),
    "volume driver binding a host path": (
        _raw(
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
        "HostConfig.Mounts[0].VolumeOptions.DriverConfig is not a setting",
    ),
    "volume driver": (_with('"VolumeDriver": "local"'), "HostConfig.VolumeDriver"),
    "volumes from another container": (
        _with('"VolumesFrom": ["etlstack-local-postgres"]'),
        "HostConfig.VolumesFrom",
    ),
    # The network: the pipelines one, set where the engine reads it and nowhere else.
    "host network": (
        _raw(json.dumps(task_container(NetworkMode="host"))),
        "HostConfig.NetworkMode",
    ),
    "another container's network": (
        _raw(json.dumps(task_container(NetworkMode="container:abc"))),
        "HostConfig.NetworkMode",
    ),
    "the platform network": (
        _raw(json.dumps(task_container(NetworkMode="etlstack-local-platform"))),
        "HostConfig.NetworkMode",
    ),
    "the Docker API network": (
        _raw(json.dumps(task_container(NetworkMode="etlstack-local-docker-api"))),
        "HostConfig.NetworkMode",
    ),
    "the default bridge": (
        _raw(json.dumps(task_container(NetworkMode="default"))),
        "HostConfig.NetworkMode",
    ),
    "a network name that only starts like the pipelines one": (
        _raw(json.dumps(task_container(NetworkMode=PIPELINES + "-x"))),
        "HostConfig.NetworkMode",
    ),
    "network mode as a duplicate key": (
        _raw(json.dumps(task_container())[:-2] + ', "NetworkMode": "host"}}'),
        'the key "NetworkMode" appears twice',
    ),
    "no network mode": (_without("NetworkMode"), "HostConfig.NetworkMode must be"),
    # The old proxy found these by pattern anywhere in the text; the engine reads neither.
    "network mode outside the host config": (
        _raw(json.dumps({**json.loads(_without("NetworkMode")), "NetworkMode": PIPELINES})),
        "NetworkMode is not a setting",
    ),
    "network mode only inside a label": (
        _raw(
            json.dumps(
                {
                    **json.loads(_without("NetworkMode")),
                    "Labels": {"x": f'"NetworkMode": "{PIPELINES}"'},
                }
            )
        ),
        "HostConfig.NetworkMode must be",
    ),
    "a second host config in another case": (
        _raw(json.dumps(task_container())[:-1] + ', "hostconfig": {"NetworkMode": "host"}}'),
        'the key "hostconfig" appears twice',
    ),
    "a second object after the first": (
        _raw(json.dumps(task_container()) + json.dumps(task_container(Privileged=True))),
        "more after its JSON object",
    ),
    "no host config": (_document(HostConfig=None), "HostConfig must be set"),
    "extra networks at create": (
        _document(NetworkingConfig={"EndpointsConfig": {"etlstack-local-platform": {}}}),
        "NetworkingConfig.EndpointsConfig must be absent",
    ),
    # Namespaces, capabilities, devices, cgroups, runtimes.
    "host pid namespace": (_with('"PidMode": "host"'), "HostConfig.PidMode"),
    "another container's pid namespace": (
        _with('"PidMode": "container:abc"'),
        "HostConfig.PidMode",
    ),
    "host ipc namespace": (_with('"IpcMode": "host"'), "HostConfig.IpcMode"),
    "host uts namespace": (_with('"UTSMode": "host"'), "HostConfig.UTSMode"),
    "host user namespace": (_with('"UsernsMode": "host"'), "HostConfig.UsernsMode"),
    "host cgroup namespace": (
        _raw(json.dumps(task_container(CgroupnsMode="host"))),
        'HostConfig.CgroupnsMode must be "private"',
    ),
    "the engine's default cgroup namespace": (
        _without("CgroupnsMode"),
        'HostConfig.CgroupnsMode must be "private"',
    ),
    "added capability": (_with('"CapAdd": ["SYS_ADMIN"]'), "HostConfig.CapAdd"),
    "added capability, odd case": (_with('"capADD": ["ALL"]'), "HostConfig.capADD"),
    "capabilities kept": (_without("CapDrop"), 'HostConfig.CapDrop must hold "ALL"'),
    "devices": (
        _with(
            '"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", '
            '"CgroupPermissions": "rwm"}]'
        ),
        "HostConfig.Devices",
    ),
    "device requests": (
        _with('"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]'),
        "HostConfig.DeviceRequests",
    ),
    "device cgroup rules": (_with('"DeviceCgroupRules": ["a *:* rwm"]'), "HostConfig.DeviceCgroup"),
    "security options": (_with('"SecurityOpt": ["seccomp=unconfined"]'), "SecurityOpt"),
    "apparmor off": (_with('"securityopt": ["apparmor=unconfined"]'), "appears twice"),
    "no-new-privileges beside a loosening option": (
        _raw(json.dumps(task_container(SecurityOpt=["no-new-privileges", "seccomp=unconfined"]))),
        'HostConfig.SecurityOpt must be exactly ["no-new-privileges"]',
    ),
    "no-new-privileges switched off": (
        _raw(json.dumps(task_container(SecurityOpt=["no-new-privileges:false"]))),
        "HostConfig.SecurityOpt must be exactly",
    ),
    "privileges gained through setuid binaries": (
        _without("SecurityOpt"),
        "HostConfig.SecurityOpt must be exactly",
    ),
    "unmasked /proc": (_with('"MaskedPaths": []'), "HostConfig.MaskedPaths is not a setting"),
    "writable /proc/sys": (_with('"ReadonlyPaths": []'), "HostConfig.ReadonlyPaths is not"),
    "sysctls": (_with('"Sysctls": {"net.ipv4.ip_forward": "1"}'), "HostConfig.Sysctls"),
    "a sysctl set to null": (
        _with('"Sysctls": {"net.ipv4.ip_forward": null}'),
        "HostConfig.Sysctls",
    ),
    "a tmpfs at a path, its options null": (_with('"Tmpfs": {"/run": null}'), "HostConfig.Tmpfs"),
    "published ports": (
        _with('"PortBindings": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]}'),
        "HostConfig.PortBindings",
    ),
    "all ports published": (_with('"PublishAllPorts": true'), "HostConfig.PublishAllPorts"),
    "links": (_with('"Links": ["etlstack-local-postgres:db"]'), "HostConfig.Links"),
    "another runtime": (_with('"Runtime": "sysbox-runc"'), "HostConfig.Runtime"),
    "another cgroup parent": (_with('"CgroupParent": "/"'), "HostConfig.CgroupParent"),
    "another cgroup": (_with('"Cgroup": "container:abc"'), "HostConfig.Cgroup "),
    "runtime annotations": (
        _with('"Annotations": {"run.oci.keep_original_groups": "1"}'),
        "HostConfig.Annotations",
    ),
    "the host's gateway by name": (
        _with('"ExtraHosts": ["host.docker.internal:host-gateway"]'),
        "HostConfig.ExtraHosts",
    ),
    "first for the OOM killer": (_with('"OomScoreAdj": -1000'), "HostConfig.OomScoreAdj"),
    "never killed for memory": (_with('"OomKillDisable": true'), "HostConfig.OomKillDisable"),
    "raised resource limits": (
        _with('"Ulimits": [{"Name": "nofile", "Soft": 1048576, "Hard": 1048576}]'),
        "HostConfig.Ulimits",
    ),
    "another group": (_with('"GroupAdd": ["0"]'), "HostConfig.GroupAdd"),
    # What a task gets: limits within the stack's maxima.
    "no memory limit": (_without("Memory"), "HostConfig.Memory must be a whole number"),
    "more memory than the stack gives a task": (
        _raw(json.dumps(task_container(Memory=512 * 2**20 + 1))),
        "HostConfig.Memory must be a whole number from 1 to 536870912",
    ),
    "memory as a decimal": (_raw(json.dumps(task_container(Memory=5e8))), "HostConfig.Memory"),
    "unlimited swap": (_raw(json.dumps(task_container(MemorySwap=-1))), "HostConfig.MemorySwap"),
    "no CPU limit": (_without("NanoCpus"), "HostConfig.NanoCpus must be"),
    "more CPU than the stack gives a task": (
        _raw(json.dumps(task_container(NanoCpus=10**9 + 1))),
        "HostConfig.NanoCpus must be a whole number from 1 to 1000000000",
    ),
    "a CPU weight above the platform's": (
        _raw(json.dumps(task_container(CpuShares=262144))),
        "HostConfig.CpuShares",
    ),
    "no process limit": (_without("PidsLimit"), "HostConfig.PidsLimit must be"),
    "unlimited processes": (
        _raw(json.dumps(task_container(PidsLimit=-1))),
        "HostConfig.PidsLimit must be a whole number from 1 to 1024",
    ),
    "the engine's default log": (_without("LogConfig"), "HostConfig.LogConfig must be"),
    "the daemon's default log driver": (
        _raw(json.dumps(task_container(LogConfig={"Type": None, "Config": {}}))),
        "HostConfig.LogConfig must be",
    ),
    "a log without a size bound": (
        _raw(json.dumps(task_container(LogConfig={"Type": "json-file", "Config": {}}))),
        "HostConfig.LogConfig must be",
    ),
    "a log file over the bound": (
        _raw(
            json.dumps(
                task_container(LogConfig={"Type": "json-file", "Config": {"max-size": "1g"}})
            )
        ),
        "HostConfig.LogConfig must be",
    ),
    "too many log files": (
        _raw(
            json.dumps(
                task_container(
                    LogConfig={"Type": "json-file", "Config": {"max-size": "1m", "max-file": "99"}}
                )
            )
        ),
        "HostConfig.LogConfig must be",
    ),
    "a log option set to null": (
        _raw(
            json.dumps(
                task_container(
                    LogConfig={
                        "Type": "json-file",
                        "Config": {"max-size": "1m", "syslog-address": None},
                    }
                )
            )
        ),
        "HostConfig.LogConfig must be",
    ),
    "log shipping elsewhere": (
        _raw(
            json.dumps(
                task_container(
                    LogConfig={"Type": "syslog", "Config": {"syslog-address": "udp://x:1"}}
                )
            )
        ),
        "HostConfig.LogConfig must be",
    ),
    "restarted by the engine": (
        _raw(json.dumps(task_container(RestartPolicy={"Name": "always"}))),
        "HostConfig.RestartPolicy must be absent",
    ),
    "restarted on failure": (
        _raw(
            json.dumps(task_container(RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 5}))
        ),
        "HostConfig.RestartPolicy must be absent",
    ),
    # The user: numeric and not root, never the image's default.
    "the image's default user": (_document(User=None), "User must be a numeric user"),
    "root user": (_document(User="root"), "User must be a numeric user"),
    "root uid and gid": (_document(User="0:0"), "User must be a numeric user"),
    "root uid spelled 00": (_document(User="00"), "User must be a numeric user"),
    "root uid spelled +0": (_document(User="+0:1000"), "User must be a numeric user"),
    "root group": (_document(User="1000:0"), "User must be a numeric user"),
    "a user name the image defines": (_document(User="nobody"), "User must be a numeric user"),
    # The image: the platform's registry's.
    "an image from elsewhere": (
        _document(Image="docker.io/library/alpine:3.20"),
        "Image must be an image of the platform's registry",
    ),
    "an image already on the host": (
        _document(Image="etlstack-e2e/postgres:standin"),
        "Image must be an image of the platform's registry",
    ),
    "stdin attached": (_document(OpenStdin=True), "OpenStdin must be absent"),
    # Bodies the engine would read otherwise than the text says.
    "non-ASCII anywhere": (
        _raw(json.dumps({**task_container(), "Env": ["CITY=Zürich"]}, ensure_ascii=False)),
        "printable ASCII",
    ),
    "a NUL byte": (_raw(json.dumps(task_container())[:-1] + "\x00}"), "NUL byte"),
    "not JSON": (_raw(json.dumps(task_container())[:-1]), "not one JSON object"),
    "null in a list": (_document(Cmd=["run_extract.sh", None]), "a list in the body holds null"),
    "a list, not an object": (_raw(json.dumps([task_container()])), "not one JSON object"),
    "nested past any need": (
        _document(Labels=None, Healthcheck=json.loads("[" * 40 + "]" * 40)),
        "nests deeper",
    ),
}


def _exchange(
    proxy: Proxy, method: str, path: str, body: bytes | None = None
) -> tuple[int, bool, str]:
    """(status, whether the stub engine saw the request, the answer's message)."""
    before = proxy.seen.count()
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    try:
        message = str(json.loads(answer)["message"])
    except (ValueError, KeyError, TypeError):
        message = answer.decode(errors="replace")
    return response.status, proxy.seen.count() > before, message


@pytest.mark.parametrize(("body", "rule"), REFUSED_CREATES.values(), ids=REFUSED_CREATES.keys())
def test_container_creates_that_escape_the_sandbox_are_refused(
    proxy: Proxy, body: bytes, rule: str
) -> None:
    status, forwarded, message = _exchange(proxy, "POST", CREATE, body)
    assert (status, forwarded) == (403, False), message
    # In the engine's error format, naming the rule, so the task's author can fix it.
    assert message.startswith("refused by the Docker API proxy: "), message
    assert rule in message, message


REFUSED_CREATE_CALLS: dict[str, str] = {
    "at no version": f"/containers/create?name={TASK}",
    "at an older version": f"/v1.40/containers/create?name={TASK}",
    "at a newer version": f"/v1.44/containers/create?name={TASK}",
    "without a name": "/v1.41/containers/create",
    "named like a platform container": "/v1.41/containers/create?name=etlstack-local-postgres",
    "named by the engine's choice of a short name": "/v1.41/containers/create?name=weather",
    "named twice": f"/v1.41/containers/create?name={TASK}&name=etlstack-local-x",
    "named with a longer suffix": f"/v1.41/containers/create?name={TASK}0",
    "named with upper-case hex": f"/v1.41/containers/create?name={TASK.upper()}",
    "named with an encoded letter": f"/v1.41/containers/create?name=%65{TASK[1:]}",
    "on another platform": f"/v1.41/containers/create?name={TASK}&platform=linux/arm64",
}


@pytest.mark.parametrize("path", REFUSED_CREATE_CALLS.values(), ids=REFUSED_CREATE_CALLS.keys())
def test_a_create_only_at_the_clients_version_and_with_a_task_name(proxy: Proxy, path: str) -> None:
    status, forwarded, message = _exchange(proxy, "POST", path, _json(task_container()))
    assert (status, forwarded) == (403, False), message
    assert "API version of the platform client" in message


OTHER_CONTAINERS = {
    "the platform's PostgreSQL": "etlstack-local-postgres",
    "a task container by its ID": CONTAINER_ID,
    "a task container by a short ID": CONTAINER_ID[:12],
    "a name only starting like a task's": f"{TASK}x",
    "a name one digit short": TASK[:-1],
    "an encoded task name": f"%65{TASK[1:]}",
    "another stack's task": TASK.replace("local", "prod"),
}
CONTAINER_CALLS = [
    ("POST", "start"),
    ("POST", "stop"),
    ("POST", "kill"),
    ("POST", "wait"),
    ("POST", "attach?stdout=1&stream=1"),
    ("GET", "json"),
    ("GET", "logs?stdout=1"),
    ("DELETE", ""),
]


@pytest.mark.parametrize(("method", "call"), CONTAINER_CALLS, ids=[c for _, c in CONTAINER_CALLS])
@pytest.mark.parametrize("name", OTHER_CONTAINERS.values(), ids=OTHER_CONTAINERS.keys())
def test_calls_reach_only_the_platforms_task_containers(
    proxy: Proxy, method: str, call: str, name: str
) -> None:
    path = f"/v1.41/containers/{name}" + (f"/{call}" if call else "")
    status, forwarded, message = _exchange(proxy, method, path)
    assert (status, forwarded) == (403, False), message
    assert "only the platform task containers are reached" in message
    # The same call on a task container goes through.
    task_path = path.replace(name, TASK)
    assert _exchange(proxy, method, task_path)[:2] != (403, False)


def test_a_body_larger_than_the_inspection_buffer_is_refused(proxy: Proxy) -> None:
    # The forbidden setting sits past the first 64 KiB: a proxy that judged only what
    # fits in its buffer would let it through.
    document = task_container()
    document["Env"] = [f"PAD{i}=" + "x" * 1000 for i in range(80)]
    body = json.dumps(document)[:-2] + ', "Privileged": true}}'
    assert _send(proxy, "POST", CREATE, body.encode()) == (403, False)
    # The same task without the padding is fine: the size alone decides.
    small = json.dumps(task_container()).encode()
    assert _send(proxy, "POST", CREATE, small)[1]


def test_bodies_are_limited_to_48_kib(proxy: Proxy) -> None:
    def body_of(size: int) -> bytes:
        document = task_container()
        document["Env"].append("PAD=")
        text = json.dumps(document)
        return text.replace('"PAD="', '"PAD=' + "x" * (size - len(text)) + '"').encode()

    assert len(body_of(49152)) == 49152
    assert _send(proxy, "POST", CREATE, body_of(49152))[1]
    assert _send(proxy, "POST", CREATE, body_of(49153)) == (403, False)


def test_a_chunked_body_is_refused(proxy: Proxy) -> None:
    body = _json(task_container())
    assert _send(proxy, "POST", CREATE, body, chunked=True) == (403, False)


def test_a_compressed_body_is_refused(proxy: Proxy) -> None:
    body = _json(task_container())
    headers = {"Content-Encoding": "gzip"}
    assert _send(proxy, "POST", CREATE, body, headers) == (403, False)


def test_a_body_on_a_call_that_takes_none_is_refused(proxy: Proxy) -> None:
    path = f"/v1.41/containers/{CONTAINER_ID}/wait"
    assert _send(proxy, "POST", path, b'{"HostConfig": {}}') == (403, False)


def _operator(proxy: Proxy, **overrides: Any) -> Any:
    """The platform's launch (the factory's operator) pointed at the test proxy."""
    from pipeline_factory.contract import DockerSettings
    from pipeline_factory.docker_operators import ConfinedDockerOperator

    docker_settings = DockerSettings(
        url=f"tcp://127.0.0.1:{proxy.port}",
        network=PIPELINES,
        warehouse_conn_id="warehouse",
        **RULES.launch_settings(),
    )
    settings: dict[str, Any] = {
        "task_id": "extract",
        "image": IMAGE,
        "command": ["run_extract.sh"],
        "docker_url": docker_settings.url,
        "api_version": docker_settings.api_version,
        "docker_settings": docker_settings,
        "network_mode": PIPELINES,
        "mount_tmp_dir": False,
        "user": "10001:10001",
        "mem_limit": "512m",
        "nano_cpus": 10**9,
        "private_environment": {"WAREHOUSE_URL": "postgresql://warehouse:pw@postgres/warehouse"},
        "auto_remove": "success",
        **overrides,
    }
    return ConfinedDockerOperator(**settings)


def test_the_platforms_launch_runs_a_task_through_the_proxy(proxy: Proxy) -> None:
    before = proxy.seen.count()
    # The stub has no images, so the operator looks the image up, pulls it, then runs it.
    _operator(proxy).execute(context={})
    calls = [(m, p.split("?")[0]) for m, p, _ in proxy.seen.requests[before:]]
    (create,) = [p for m, p, _ in proxy.seen.requests[before:] if "/containers/create" in p]
    name = create.split("name=")[1]
    assert name.startswith(RULES.name_prefix) and len(name) == len(TASK)
    # Every call after the create reaches the container by that name, never by its ID.
    for expected in [
        ("GET", "/v1.41/_ping"),
        ("GET", "/v1.41/images/json"),
        ("POST", "/v1.41/images/create"),
        ("POST", "/v1.41/containers/create"),
        ("POST", f"/v1.41/containers/{name}/attach"),
        ("POST", f"/v1.41/containers/{name}/start"),
        ("POST", f"/v1.41/containers/{name}/wait"),
        ("DELETE", f"/v1.41/containers/{name}"),
    ]:
        assert expected in calls, f"{expected} did not reach the engine: {calls}"
    scoped = {p.split("/")[3] for _, p in calls if p.startswith("/v1.41/containers/")}
    assert scoped == {"create", name}, calls
    created = next(
        json.loads(body)
        for method, path, body in proxy.seen.requests[before:]
        if path.split("?")[0].endswith("/containers/create")
    )
    host = created["HostConfig"]
    assert host["NetworkMode"] == PIPELINES
    assert (host["PidsLimit"], host["CgroupnsMode"]) == (1024, "private")
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10000000", "max-file": "3"},
    }


@pytest.mark.parametrize(
    ("escape", "rule"),
    [
        ({"privileged": True}, "HostConfig.Privileged"),
        ({"mounts": [{"Target": "/host", "Source": "/", "Type": "bind"}]}, "HostConfig.Mounts"),
        ({"cap_add": ["SYS_ADMIN"]}, "HostConfig.CapAdd"),
        ({"network_mode": "host"}, "HostConfig.NetworkMode"),
        ({"ipc_mode": "host"}, "HostConfig.IpcMode"),
        ({"user": None}, "User must be a numeric user"),
        ({"mem_limit": "1g"}, "HostConfig.Memory"),
        ({"nano_cpus": 2 * 10**9}, "HostConfig.NanoCpus"),
    ],
    ids=[
        "privileged",
        "host bind mount",
        "added capability",
        "host network",
        "host ipc",
        "image's default user",
        "more memory",
        "more CPU",
    ],
)
def test_the_launch_is_refused_when_it_asks_for_more(
    proxy: Proxy, escape: dict[str, Any], rule: str
) -> None:
    from docker.errors import APIError

    before = proxy.seen.count()
    with pytest.raises(APIError) as refused:
        _operator(proxy, **escape).execute(context={})
    assert refused.value.status_code == 403
    # docker-py hands the proxy's message on: it reaches the task log.
    assert rule in str(refused.value.explanation)
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
    removed = remove_failed_containers(_client(proxy), datetime.now(UTC), RULES.name_prefix)
    assert removed == [TASK]
    calls = [(m, p.split("?")[0].removeprefix("/v1.41")) for m, p in _reached(proxy, before)]
    assert ("GET", "/containers/json") in calls
    assert ("DELETE", f"/containers/{TASK}") in calls


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
    assert "@" not in render_config(RULES).replace("%40", "").replace("@sha256", "")


def test_the_deployed_configuration_is_the_tested_one_with_production_endpoints() -> None:
    deployed = render_config(RULES)
    tested = render_config(
        RULES, listen="127.0.0.1:1", docker_socket="/tmp/x.sock", judge_path="/tmp/judge.lua"
    )
    assert "bind :2375\n" in deployed
    assert "server engine /var/run/docker.sock\n" in deployed
    assert "lua-load /usr/local/etc/haproxy/create_judge.lua\n" in deployed
    assert (
        deployed.replace("bind :2375", "bind 127.0.0.1:1")
        .replace("/var/run/docker.sock", "/tmp/x.sock")
        .replace("/usr/local/etc/haproxy/create_judge.lua", "/tmp/judge.lua")
        == tested
    )


def test_haproxy_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    judge = tmp_path / "create_judge.lua"
    judge.write_text(CREATE_JUDGE.read_text())
    config.write_text(render_config(RULES, judge_path=str(judge)))
    haproxy.check(tmp_path, config)


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


def test_the_proxy_runs_the_allowlist_with_this_stacks_rules(local: render.Evaluation) -> None:
    proxy = container(local, "docker-api-proxy").inputs
    config, judge = proxy["uploads"]
    assert config["file"] == "/usr/local/etc/haproxy/haproxy.cfg"
    # The stack's pipelines network, registry, name prefix and task resources.
    assert config["content"] == render_config(
        replace(RULES, registry=f"127.0.0.1:{local.config.docker.ports.registry}")
    )
    assert judge == {"file": JUDGE_PATH, "content": CREATE_JUDGE.read_text()}
    assert proxy["command"][-2:] == ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]


def test_the_launch_follows_the_rules_the_proxy_enforces(local: render.Evaluation) -> None:
    proxy_config = container(local, "docker-api-proxy").inputs["uploads"][0]["content"]
    runtime = json.loads(env(container(local, "airflow-scheduler"))["ETLSTACK_RUNTIME"])
    launch = runtime["docker"]
    assert f'setenv ETLSTACK_CREATE_RULES "network={launch["network"]} ' in proxy_config
    assert "/v" + launch["apiVersion"].replace(".", "\\.") + "/containers/create" in proxy_config
    assert f"max_pids={launch['pidsLimit']} " in proxy_config
    assert f"max_log_bytes={launch['logMaxBytes']} max_log_files={launch['logMaxFiles']}" in (
        proxy_config
    )
    assert launch["taskContainerPrefix"].replace("-", "\\-") in proxy_config


def test_a_refusal_is_logged_with_the_rule_it_broke(proxy: Proxy) -> None:
    body = _raw(json.dumps(task_container(PidsLimit=0)))
    status, _, message = _exchange(proxy, "POST", CREATE, body)
    assert status == 403
    rule = message.removeprefix("refused by the Docker API proxy: ").split(";")[0]
    line = proxy.haproxy.line_with("HostConfig.PidsLimit")
    assert f"POST {CREATE} HTTP/1.1" in line and " 403 " in line
    assert rule.replace('"', "") in line.replace('"', "")


def test_a_create_the_judge_fails_on_is_refused(tmp_path: Path) -> None:
    # A judge with a fault in it: HAProxy logs a Lua error and goes on with the request,
    # so only the configuration's own check stands between the create and the engine.
    faulty = 'core.register_action("judge_create", { "http-req" }, function(txn) error("x") end, 0)'
    with _running_proxy(tmp_path, faulty) as running:
        status, forwarded, message = _exchange(running, "POST", CREATE, _json(task_container()))
    assert (status, forwarded) == (403, False), message
    assert "the proxy could not judge it" in message
