"""Every workload's security settings: what the restricted Pod Security profile asks of
users, seccomp, privilege escalation, capabilities and host namespaces, and a read-only
root filesystem whose writable paths are volumes (the namespaces enforce the profile
itself: test_namespaces.py)."""

from __future__ import annotations

import pytest

from tests.unit.kubernetes.stack import (
    COMPONENTS,
    Stack,
    airflow_config,
    airflow_deployment,
    main_container,
    runs_its_registry,
)
from tests.unit.kubernetes_helpers import (
    all_containers,
    pod_spec,
)


def test_every_workload_runs_restricted(stack: Stack) -> None:
    workloads = [o for o in stack.objects if pod_spec(o) is not None]
    # postgres and its backups, migrations, four Airflow components, and the registry
    # where this stack runs it.
    assert len(workloads) == 7 + runs_its_registry(stack)
    for obj in workloads:
        spec = pod_spec(obj)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        writable = {
            v["name"]
            for v in spec.get("volumes", [])
            if "emptyDir" in v or "persistentVolumeClaim" in v
        }
        for container in all_containers(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["readOnlyRootFilesystem"] is True
            # What the process writes to is a volume, not the image.
            for mount in container.get("volumeMounts", []):
                if mount["mountPath"] in ("/tmp", "/opt/airflow/logs", "/opt/airflow/config"):
                    assert mount["name"] in writable


@pytest.mark.parametrize("component", COMPONENTS)
def test_airflow_writes_its_config_file_to_a_volume(stack: Stack, component: str) -> None:
    path = airflow_config(stack)["AIRFLOW_CONFIG"]
    mounts = [
        m["mountPath"] for m in main_container(airflow_deployment(stack, component))["volumeMounts"]
    ]
    assert any(path.startswith(mount + "/") for mount in mounts)
