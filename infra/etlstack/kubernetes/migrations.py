"""The one-shot database migration (and admin user, and pipeline pool): a Job.

A Job's pod template is immutable, so its name carries the Airflow version and a
hash of everything in its spec that can change (the image above all): an upgrade
creates a new Job instead of patching the old one, which the API server would
refuse. Pulumi waits for the Job to complete before it starts the Deployments, and
their pods wait for the migrations too (`airflow db check-migrations`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from etlstack.aliases import formerly
from etlstack.config import Airflow
from etlstack.kubernetes.airflow import AIRFLOW, AirflowPod, service_account_name
from etlstack.kubernetes.common import child, labels, metadata
from etlstack.kubernetes.secrets import AIRFLOW_ADMIN_PASSWORD_KEY, AIRFLOW_ADMIN_SECRET

COMPONENT = "migrations"


def job_name(airflow_version: str, identity: str) -> str:
    """`airflow-migrate-<version>-<hash>`: at most 63 characters, a valid DNS label."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return f"airflow-migrate-{airflow_version.replace('.', '-').lower()}-{digest}"


@dataclass(frozen=True)
class MigrationsArgs:
    airflow: Airflow
    airflow_version: str
    pod: AirflowPod


class Migrations(pulumi.ComponentResource):
    job: k8s.batch.v1.Job

    def __init__(
        self, name: str, args: MigrationsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:AirflowMigrations", name, None, opts)
        airflow = args.airflow
        pod = args.pod
        account = service_account_name(COMPONENT)
        object_labels = labels(AIRFLOW, COMPONENT)
        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=metadata(account, pod.namespace, object_labels),
            automount_service_account_token=False,
            opts=child(self, depends_on=pod.depends_on, aliases=formerly("airflow-migrations")),
        )
        plain_env = {
            "ETLSTACK_ADMIN_USERNAME": airflow.admin_username,
            "ETLSTACK_ADMIN_EMAIL": airflow.admin_email,
            "ETLSTACK_PIPELINE_SLOTS": str(airflow.pipeline_task_slots),
        }
        resources = airflow.scheduler.resources
        versioned_name = pod.image.apply(
            lambda image: job_name(
                args.airflow_version,
                json.dumps(
                    {"image": image, "env": plain_env, "resources": resources.model_dump()},
                    sort_keys=True,
                ),
            )
        )
        env = [k8s.core.v1.EnvVarArgs(name=key, value=value) for key, value in plain_env.items()]
        env.append(
            k8s.core.v1.EnvVarArgs(
                name="ETLSTACK_ADMIN_PASSWORD",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name=AIRFLOW_ADMIN_SECRET, key=AIRFLOW_ADMIN_PASSWORD_KEY
                    )
                ),
            )
        )
        container = pod.container(COMPONENT, ["etlstack-init"], airflow.scheduler, env=env)
        self.job = k8s.batch.v1.Job(
            name,
            metadata=metadata(versioned_name, pod.namespace, object_labels),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=4,
                active_deadline_seconds=1800,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=object_labels),
                    spec=pod.spec(COMPONENT, [container], api_token=False, restart_policy="Never"),
                ),
            ),
            opts=child(
                self,
                depends_on=[*pod.depends_on, service_account],
                custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m"),
                aliases=formerly("airflow-migrations"),
            ),
        )
        self.register_outputs({"job": self.job.metadata.name})
