"""The docker target: the whole platform on one Docker Engine."""

from etlstack.docker.platform import DockerPlatform, DockerPlatformArgs

__all__ = ["DockerPlatform", "DockerPlatformArgs"]
