"""Local stand-ins for the public base images, which cannot be pulled here.

Debian root filesystems made with debootstrap become the base images, one per suite;
the PostgreSQL, registry, HAProxy and Python stand-ins are built on them from the
Dockerfiles in base_images/. Every image is tagged with a hash of what it is made
from, so a second run on the same machine reuses them and a changed Dockerfile
rebuilds exactly what it affects. The stack is pointed at them through its image
settings, the way a team with an internal mirror would.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors

log = logging.getLogger("e2e")

HERE = Path(__file__).resolve().parent
DOCKERFILES = HERE / "base_images"
REPOSITORY = "etlstack-e2e"
MIRROR = "http://deb.debian.org/debian"

# The stack's image setting each stand-in replaces, and the Debian suite it is built on:
# trixie (Debian 13) where the stack pins a major only it ships: PostgreSQL 17, and
# HAProxy 3.0 (bookworm's is 2.6), so the proxy's configuration is checked on the major
# it is deployed with (its unit tests run this stand-in too: tests/support/haproxy.py);
# bookworm (Debian 12) for the rest, whose Python 3.11 is the stack's Python base.
STAND_INS = {
    "postgres": ("postgres", "trixie"),
    "registry": ("registry", "bookworm"),
    "dockerProxy": ("haproxy", "trixie"),
    "pythonBase": ("python", "bookworm"),
}


def _sources(suite: str) -> str:
    # apt inside the images talks plain http to Debian's mirrors: TLS from containers is
    # intercepted here, and apt verifies packages by signature anyway.
    return (
        f"deb {MIRROR} {suite} main\n"
        f"deb {MIRROR} {suite}-updates main\n"
        f"deb http://deb.debian.org/debian-security {suite}-security main\n"
    )


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:16]


def _files(directory: Path) -> Iterator[Path]:
    return iter(sorted(p for p in directory.rglob("*") if p.is_file()))


def _exists(client: docker.DockerClient, reference: str) -> bool:
    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def _base(client: docker.DockerClient, suite: str) -> str:
    sources = _sources(suite)
    key = _digest(b"debootstrap --variant=minbase", suite.encode(), sources.encode())
    reference = f"{REPOSITORY}/debian:{suite}-{key}"
    if _exists(client, reference):
        log.info("base image %s is cached", reference)
        return reference
    if shutil.which("debootstrap") is None:
        raise RuntimeError(
            "debootstrap is not installed; install it with: apt-get install debootstrap"
        )
    log.info("building the Debian %s root filesystem with debootstrap", suite)
    with tempfile.TemporaryDirectory(prefix="e2e-rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), MIRROR],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        (rootfs / "etc/apt/sources.list").write_text(sources)
        # As in Debian's official images: no package caches left in layers.
        (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
            'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n'
            'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n'
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        tarball = Path(work) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], check=True
        )
        repository, tag = reference.rsplit(":", 1)
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=tag, changes=['CMD ["bash"]']
        )
    log.info("imported %s", reference)
    return reference


def _stand_in(client: docker.DockerClient, base: str, name: str) -> str:
    context = DOCKERFILES / name
    parts = [base.encode()]
    for path in _files(context):
        parts += [str(path.relative_to(context)).encode(), path.read_bytes()]
    reference = f"{REPOSITORY}/{name}:standin-{_digest(*parts)}"
    if _exists(client, reference):
        log.info("stand-in %s is cached", reference)
        return reference
    log.info("building stand-in %s", reference)
    try:
        client.images.build(
            path=str(context), tag=reference, buildargs={"BASE": base}, rm=True, forcerm=True
        )
    except docker.errors.BuildError as error:
        tail = "".join(str(line.get("stream", line.get("error", ""))) for line in error.build_log)
        raise RuntimeError(f"building the {name} stand-in failed:\n{tail[-4000:]}") from None
    return reference


def stand_in(client: docker.DockerClient, setting: str) -> str:
    """The stand-in for one image setting (a key of STAND_INS), built unless cached."""
    name, suite = STAND_INS[setting]
    return _stand_in(client, _base(client, suite), name)


def ensure(client: docker.DockerClient) -> dict[str, str]:
    """Build what is missing; return the stack's image settings pointing at the stand-ins."""
    return {setting: stand_in(client, setting) for setting in STAND_INS}


_PEM = re.compile(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")


def _certificates(text: str) -> dict[str, str]:
    """PEM certificates keyed by their base64 body (whitespace removed)."""
    return {"".join(pem.split()): pem for pem in _PEM.findall(text)}


def extra_ca_bundle(client: docker.DockerClient, python_base: str, host_bundle: Path) -> str:
    """The CAs this host trusts beyond Debian's own store: the TLS interceptor's, if any.

    That is what a team behind a TLS-intercepting proxy passes as the extra CA bundle.
    Not the whole host bundle: a build argument reaches RUN as an environment
    variable, and Linux refuses a single one over 128 KiB (the host bundle is bigger).
    """
    stock = client.containers.run(
        python_base, ["cat", "/etc/ssl/certs/ca-certificates.crt"], remove=True
    )
    theirs = _certificates(bytes(stock).decode())
    ours = _certificates(host_bundle.read_text())
    return "\n".join(pem for key, pem in ours.items() if key not in theirs)
