"""HAProxy for the Docker API proxy's tests: the major the stack deploys, in a container.

The stack's proxy image is haproxy:3.0.x (images.dockerProxy). Debian 12's HAProxy is
2.6, and Debian 13's 3.0 does not run on a Debian 12 host (it needs a newer libc), so
the tests run the end-to-end run's stand-in for that image (tests/e2e/base_images.py:
Debian 13's HAProxy 3.0, Lua 5.4) on the Docker Engine. The image is built once per
machine and then reused by its hash, exactly as the end-to-end run builds and reuses
it: cold, about half a minute (a Debian 13 root filesystem with debootstrap, then the
package); cached, an instant.

The container sees the test's work directory, read-only, at the same path, so every
path in a configuration written there (the stub engine's socket, files it loads)
means the same inside. It shares the host's network, so the configuration's `bind
127.0.0.1:<port>` is reachable from the test and from nothing beyond this machine. It
runs as the test's own uid and gid, so it can connect to a socket the test created,
with no capabilities, as the deployed proxy.

No Docker Engine is a failure, not a skip: these tests are the proxy's only check
short of the end-to-end run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
import requests
from docker.models.containers import Container
from docker.types import LogConfig

from tests.e2e import base_images
from tests.support.polling import until

# The stack's image setting the stand-in replaces.
SETTING = "dockerProxy"
START_ENGINE = "tests/e2e/engine.sh start"
# On every container these helpers start, to find one a killed test run left behind.
LABEL = "org.etlstack.test"


def engine() -> docker.DockerClient:
    """The Docker Engine on this machine; fails the test, with the fix, when none answers."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as error:
        reason = str(error)
    else:
        return client
    # Outside the except block, so the failure is this one message, not a chain.
    pytest.fail(
        "the Docker API proxy's tests run HAProxy 3.0 in a container, and no Docker Engine "
        f"answers ({reason}); start one with `{START_ENGINE}` and run them again",
        pytrace=False,
    )


def image(client: docker.DockerClient) -> str:
    """The HAProxy stand-in image's reference, built first unless it is cached."""
    try:
        return str(base_images.stand_in(client, SETTING))
    except RuntimeError as error:  # debootstrap or the build failed; it says how
        reason = str(error)
    pytest.fail(f"the HAProxy stand-in image could not be built: {reason}", pytrace=False)


@dataclass
class HAProxy:
    """A running HAProxy container."""

    container: Container

    def logs(self) -> str:
        """Everything HAProxy wrote so far (the proxy logs one line per request to stdout).

        A request's line is written as it ends, and reaches the engine's log a moment
        after the response: to assert on one, wait for it with line_with.
        """
        return bytes(self.container.logs(stdout=True, stderr=True)).decode(errors="replace")

    def line_with(self, text: str, *, timeout: float = 5) -> str:
        """The first log line containing `text`, once it is there."""

        def found() -> str | None:
            return next((line for line in self.logs().splitlines() if text in line), None)

        return until(
            found,
            timeout=timeout,
            interval=0.05,
            what=lambda: f"a line with {text!r} in HAProxy's log:\n{self.logs()}",
        )


def _start(
    client: docker.DockerClient, workdir: Path, command: list[str], *, network: str
) -> Container:
    return client.containers.run(
        image(client),
        command,
        detach=True,
        name=f"etlstack-test-haproxy-{uuid.uuid4().hex[:12]}",
        labels={LABEL: "haproxy"},
        user=f"{os.getuid()}:{os.getgid()}",
        network_mode=network,
        volumes={str(workdir): {"bind": str(workdir), "mode": "ro"}},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        # Whatever the engine's default, the log must be readable back.
        log_config=LogConfig(type=LogConfig.types.JSON),
    )


def _remove(container: Container) -> str:
    """The container's log, then the container gone."""
    try:
        return HAProxy(container).logs()
    finally:
        container.remove(force=True)


def _inside(workdir: Path, config: Path) -> None:
    if not config.resolve().is_relative_to(workdir.resolve()):
        raise ValueError(f"{config} is not in {workdir}, the only directory HAProxy sees")


def check(workdir: Path, config: Path) -> None:
    """`haproxy -c` on `config` (a file in `workdir`): fails the test with HAProxy's words."""
    with contextlib.closing(engine()) as client:
        _check(client, workdir, config)


def _check(client: docker.DockerClient, workdir: Path, config: Path) -> None:
    _inside(workdir, config)
    # No network: a check binds nothing and connects nowhere.
    container = _start(client, workdir, ["haproxy", "-c", "-f", str(config)], network="none")
    try:
        status = container.wait(timeout=120)["StatusCode"]
    finally:
        output = _remove(container)
    assert status == 0, f"HAProxy refuses {config} (haproxy -c exited {status}):\n{output}"


@contextmanager
def serve(workdir: Path, config: Path, *, port: int) -> Iterator[HAProxy]:
    """HAProxy running `config` (a file in `workdir`, checked first), until the block ends.

    `port` is the one the configuration binds on 127.0.0.1: the block starts once it
    answers there. The container is removed at the end; its log is kept next to the
    configuration (haproxy.log), and is in the failure when HAProxy does not start or
    stops before the end.
    """
    with contextlib.closing(engine()) as client:
        _check(client, workdir, config)
        container = _start(client, workdir, ["haproxy", "-f", str(config)], network="host")
        yield from _running(container, config, port)


def _running(container: Container, config: Path, port: int) -> Iterator[HAProxy]:
    haproxy = HAProxy(container)

    def listening() -> bool:
        container.reload()
        assert container.status == "running", (
            f"HAProxy exited on start ({container.attrs['State'].get('ExitCode')}):\n"
            + haproxy.logs()
        )
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    stopped_early = False
    try:
        until(
            listening,
            timeout=30,
            interval=0.05,
            what=lambda: f"HAProxy listening on 127.0.0.1:{port}; its log:\n{haproxy.logs()}",
            retry_on=(OSError,),
        )
        yield haproxy
        container.reload()
        stopped_early = container.status != "running"
    finally:
        log = _remove(container)
        (config.parent / "haproxy.log").write_text(log)
    assert not stopped_early, f"HAProxy stopped before the tests' end; its log:\n{log}"
