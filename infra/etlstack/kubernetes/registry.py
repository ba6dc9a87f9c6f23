"""The container registry the cluster pulls the platform's images from.

Deployed in the cluster (the distribution registry with htpasswd auth, on a claim
that deleting the stack leaves in place: a promoted digest must stay pullable), and
published through an Ingress at `registry.host`, which is where image pushes go and
where kubelets pull from. Or, with `registry.external`, a registry the team already
runs at `registry.host`, with the secret `registryPassword`. Or, with
`registry.fromStack`, the registry another stack deploys (prod uses dev's).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from etlstack.aliases import formerly
from etlstack.config import Registry as RegistrySettings
from etlstack.kubernetes.common import (
    REGISTRY_PORT,
    MountedVolume,
    child,
    claim_volume,
    labels,
    metadata,
    resources,
    service_pod_spec,
    single_host_ingress_spec,
    volume_claim,
)

NAME = "registry"
DATA_CLAIM = "registry-data"
# An unprivileged uid; the official image runs as root unless told otherwise, and
# needs nothing but its storage directory writable.
REGISTRY_UID = 1000
HTPASSWD_MOUNT = "/auth"


@dataclass(frozen=True)
class RegistryArgs:
    settings: RegistrySettings
    image: str
    storage_class: str | None
    # The Ingress class the registry's Ingress uses (kubernetes.ingress.className).
    ingress_class: str | None
    # The secret password of an external registry (registry.external).
    external_password: pulumi.Output[str] | None
    namespace: pulumi.Input[str]


class Registry(pulumi.ComponentResource):
    # The host images are pushed to and pulled from; resolves once the registry is up.
    server: pulumi.Output[str]
    username: str
    password: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:Registry", name, None, opts)
        settings = args.settings
        self.username = settings.username
        if settings.from_stack is not None:
            # The same registry another stack deploys (prod pulling what dev pushed):
            # its address and password come from that stack's outputs, still secret.
            source_stack = (
                f"{pulumi.get_organization()}/{pulumi.get_project()}/{settings.from_stack}"
            )
            # A read, not a resource the stack manages: under a new name it is read again,
            # nothing is replaced, and the engine takes no alias for a read.
            source = pulumi.StackReference(
                f"{name}-source", stack_name=source_stack, opts=child(self)
            )
            self.server = source.require_output("registry").apply(str)
            self.password = pulumi.Output.secret(source.require_output("registryPassword"))
            self.register_outputs({"server": self.server})
            return
        assert settings.host, "config requires registry.host on kubernetes"
        if settings.external:
            assert args.external_password is not None
            self.server = pulumi.Output.from_input(settings.host)
            self.password = pulumi.Output.secret(args.external_password)
            self.register_outputs({"server": self.server})
            return

        namespace = args.namespace
        generated = random.RandomPassword(
            f"{name}-password",
            length=32,
            special=False,
            opts=child(self, aliases=formerly("registry-password")),
        )
        self.password = generated.result
        http_secret = random.RandomPassword(
            f"{name}-http-secret",
            length=32,
            special=False,
            opts=child(self, aliases=formerly("registry-http-secret")),
        ).result
        auth = k8s.core.v1.Secret(
            f"{name}-auth",
            metadata=metadata("registry-auth", namespace, labels(NAME)),
            type="Opaque",
            string_data={
                # bcrypt, the only hash the registry's htpasswd support accepts.
                "htpasswd": pulumi.Output.concat(
                    settings.username, ":", generated.bcrypt_hash, "\n"
                ),
                "http-secret": http_secret,
            },
            opts=child(self, aliases=formerly("registry-auth")),
        )
        claim = volume_claim(
            f"{name}-data",
            DATA_CLAIM,
            namespace,
            labels(NAME),
            settings.storage_size,
            args.storage_class,
            child(self, retain_on_delete=True, aliases=formerly("registry-data")),
        )
        pod_labels = labels(NAME, "registry")
        health = k8s.core.v1.HTTPGetActionArgs(path="/", port=REGISTRY_PORT)
        deployment = k8s.apps.v1.Deployment(
            name,
            metadata=metadata(NAME, namespace, labels(NAME)),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                # The claim is ReadWriteOnce: the old pod must let go before the new one starts.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels),
                    spec=service_pod_spec(
                        name="registry",
                        image=args.image,
                        uid=REGISTRY_UID,
                        port=k8s.core.v1.ContainerPortArgs(
                            name="http", container_port=REGISTRY_PORT
                        ),
                        env=[
                            k8s.core.v1.EnvVarArgs(name="REGISTRY_AUTH", value="htpasswd"),
                            k8s.core.v1.EnvVarArgs(
                                name="REGISTRY_AUTH_HTPASSWD_REALM", value="etlstack"
                            ),
                            k8s.core.v1.EnvVarArgs(
                                name="REGISTRY_AUTH_HTPASSWD_PATH",
                                value=f"{HTPASSWD_MOUNT}/htpasswd",
                            ),
                            k8s.core.v1.EnvVarArgs(
                                name="REGISTRY_HTTP_SECRET",
                                value_from=k8s.core.v1.EnvVarSourceArgs(
                                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                                        name="registry-auth", key="http-secret"
                                    )
                                ),
                            ),
                            # Deleting is how old, unpromoted images get cleaned up.
                            k8s.core.v1.EnvVarArgs(
                                name="REGISTRY_STORAGE_DELETE_ENABLED", value="true"
                            ),
                        ],
                        requirements=resources("250m", "256Mi"),
                        mounted=[
                            MountedVolume(claim_volume(DATA_CLAIM), "/var/lib/registry"),
                            MountedVolume(
                                k8s.core.v1.VolumeArgs(
                                    name="auth",
                                    secret=k8s.core.v1.SecretVolumeSourceArgs(
                                        secret_name="registry-auth",
                                        items=[
                                            k8s.core.v1.KeyToPathArgs(
                                                key="htpasswd", path="htpasswd"
                                            )
                                        ],
                                        default_mode=0o440,
                                    ),
                                ),
                                HTPASSWD_MOUNT,
                                read_only=True,
                            ),
                        ],
                        scratch={"tmp": "/tmp"},
                        # `/` answers 200 without credentials; the API under /v2/ wants them.
                        readiness_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=10),
                        liveness_probe=k8s.core.v1.ProbeArgs(
                            http_get=health, initial_delay_seconds=10, period_seconds=20
                        ),
                    ),
                ),
            ),
            opts=child(self, depends_on=[auth, claim], aliases=formerly("registry")),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(NAME, namespace, labels(NAME)),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=pod_labels,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=REGISTRY_PORT)],
            ),
            opts=child(self, aliases=formerly("registry-service")),
        )
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata=metadata(
                NAME,
                namespace,
                labels(NAME),
                # Image layers are large: no body size limit on ingress-nginx (ignored elsewhere).
                annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "0"},
            ),
            # Always TLS: kubelets pull over HTTPS (the controller's default
            # certificate unless registry.tlsSecretName names one).
            spec=single_host_ingress_spec(
                host=settings.host,
                service=NAME,
                port=k8s.networking.v1.ServiceBackendPortArgs(number=REGISTRY_PORT),
                class_name=args.ingress_class,
                tls_secret_name=settings.tls_secret_name,
                always_tls=True,
            ),
            opts=child(self, depends_on=[service], aliases=formerly("registry-ingress")),
        )
        # Pushing needs the registry to answer: the server resolves only once it does.
        host = settings.host
        self.server = pulumi.Output.all(deployment.id, ingress.id).apply(lambda _: host)
        self.register_outputs({"server": self.server})
