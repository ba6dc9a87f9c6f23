"""The platform's own images: Airflow (with the DAGs baked in) and one per pipeline.

A stack either builds them from this repository and pushes them to its registry
(local, dev), or deploys references promoted from another stack, pinned by digest
(prod). Either way the references end up in the `artifacts` output, which is what
promotion copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from etlstack.aliases import formerly
from etlstack.catalog import Catalog
from etlstack.config import StackConfig

AIRFLOW = "airflow"
DAGS = "dags"
REPOSITORY_PREFIX = "etlstack"


@dataclass(frozen=True)
class RegistryAccess:
    """Where images go, and the credentials the builder and the runtime pull with."""

    server: pulumi.Input[str]
    username: str
    password: pulumi.Output[str]


@dataclass(frozen=True)
class PlatformImagesArgs:
    config: StackConfig
    catalog: Catalog
    registry: RegistryAccess


class PlatformImages(pulumi.ComponentResource):
    """Builds and pushes the images, or takes the promoted ones as they are."""

    airflow: pulumi.Output[str]
    pipelines: dict[str, pulumi.Output[str]]
    dags_version: str

    def __init__(
        self, name: str, args: PlatformImagesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:images:PlatformImages", name, None, opts)
        pinned = args.config.settings.artifacts
        if pinned is not None:
            self.airflow = pulumi.Output.from_input(pinned[AIRFLOW])
            self.dags_version = pinned[DAGS]
            self.pipelines = {
                key: pulumi.Output.from_input(ref)
                for key, ref in sorted(pinned.items())
                if key not in (AIRFLOW, DAGS)
            }
        else:
            self.dags_version = args.catalog.dags_version
            build_args = _build_args(args.config)
            self.airflow = self._image(
                f"{name}-{AIRFLOW}",
                AIRFLOW,
                args,
                repository=f"{REPOSITORY_PREFIX}/airflow",
                tag=args.catalog.airflow_image_tag,
                context=_from_working_directory(args.config.project_root),
                dockerfile=_from_working_directory(
                    args.config.project_root / "airflow_image" / "Dockerfile"
                ),
                build_args={**build_args, "DAGS_VERSION": self.dags_version},
            )
            self.pipelines = {
                pipeline.name: self._image(
                    f"{name}-{pipeline.name}",
                    pipeline.name,
                    args,
                    repository=f"{REPOSITORY_PREFIX}/pipelines/{pipeline.name}",
                    tag=pipeline.image_tag,
                    context=_from_working_directory(pipeline.directory),
                    dockerfile=_from_working_directory(pipeline.dockerfile),
                    build_args=build_args,
                )
                for pipeline in args.catalog.pipelines
            }
        self.register_outputs({"airflow": self.airflow, "pipelines": self.pipelines})

    def _image(
        self,
        resource_name: str,
        artifact: str,
        args: PlatformImagesArgs,
        *,
        repository: str,
        tag: str,
        context: str,
        dockerfile: str,
        build_args: dict[str, str],
    ) -> pulumi.Output[str]:
        image_name = pulumi.Output.concat(args.registry.server, "/", repository, ":", tag)
        image = docker.Image(
            resource_name,
            image_name=image_name,
            build=docker.DockerBuildArgs(
                # Relative paths: the same commit builds with the same inputs on every
                # machine, whatever folder it is checked out in.
                context=context,
                dockerfile=dockerfile,
                # The classic builder: it needs nothing but the Docker Engine.
                builder_version=docker.BuilderVersion.BUILDER_V1,
                platform="linux/amd64",
                args=build_args,
            ),
            registry=docker.RegistryArgs(
                server=args.registry.server,
                username=args.registry.username,
                password=args.registry.password,
            ),
            skip_push=False,
            # Tags are never reused, so a replaced image must not delete the old tag,
            # which a rollback may still point at.
            opts=pulumi.ResourceOptions(
                parent=self, retain_on_delete=True, aliases=formerly(f"{artifact}-image")
            ),
        )
        return image.repo_digest

    def references(self) -> pulumi.Output[dict[str, str]]:
        """The `artifacts` output: every deployed artifact, pinned."""
        return pulumi.Output.all(
            airflow=self.airflow, dags=pulumi.Output.from_input(self.dags_version), **self.pipelines
        ).apply(lambda refs: dict(sorted(refs.items())))


def _from_working_directory(path: Path) -> str:
    """`path` relative to the working directory, which the provider shares with the
    program (with `main: infra/` that is infra/, not the project root)."""
    return os.path.relpath(path)


def _build_args(config: StackConfig) -> dict[str, str]:
    build = config.settings.build
    args = {"BASE_IMAGE": config.settings.images.python_base}
    if build.pip_index_url:
        args["PIP_INDEX_URL"] = build.pip_index_url
    if build.ca_bundle_file:
        args["EXTRA_CA_BUNDLE"] = Path(build.ca_bundle_file).read_text()
    return args
