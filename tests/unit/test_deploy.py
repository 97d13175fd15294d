"""The deploy files are checked, not just written: linters, schemas, and what ops rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda

from router.metrics import NAMES
from router.settings import Settings

DEPLOY = Path(__file__).parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.37.0"  # the newest schema kubernetes-validate ships
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A checker from the venv (pip) or the system (tests/system/install.sh)."""
    found = shutil.which(name, path=f"{BIN}:/usr/bin:/usr/local/bin")
    assert found, f"{name} is missing; `make test` installs it"
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_dockerfile_passes_hadolint() -> None:
    done = run(tool("hadolint"), str(DEPLOY / "Dockerfile"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_multi_stage_non_root_and_runs_the_router_with_every_codec() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) == 2 and all(s.endswith("-slim") or "slim" in s for s in stages)
    final = text.split("\nFROM ")[-1]
    assert "USER 10001" in final and "pip wheel" not in final
    assert 'ENTRYPOINT ["router"]' in final and 'CMD ["run"]' in final
    assert "has_snappy() and c.has_lz4() and c.has_zstd()" in final


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    done = run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(DEPLOY / "docker-compose.yml"),
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_stack_runs_two_routers_in_one_group_after_a_one_shot_migration() -> None:
    [compose] = documents(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["router"]["deploy"]["replicas"] == 2
    assert services["router"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["api"]["command"] == ["api"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


MANIFESTS = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "scaledobject.yaml")


@pytest.mark.parametrize("name", MANIFESTS)
def test_each_kubernetes_manifest_is_valid_strictly(name: str) -> None:
    done = run(
        tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(KUBERNETES / name)
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_keda_objects_match_kedas_crd_schema_exactly() -> None:
    for doc in documents(KUBERNETES / "scaledobject.yaml"):
        model = getattr(keda, doc["kind"]).model_validate(doc)
        # The models come from KEDA's CRDs; a field they do not know is dropped,
        # so a round trip that changes the document means an unknown field.
        assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc


def test_the_deployment_probes_drains_and_scales_as_the_router_expects() -> None:
    [deployment] = documents(KUBERNETES / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["terminationGracePeriodSeconds"] > Settings().shutdown_timeout_seconds
    assert {"requests", "limits"} <= set(container["resources"])
    [instance] = [e for e in container["env"] if e["name"] == "ROUTER_KAFKA_GROUP_INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert pod["securityContext"]["runAsNonRoot"] is True

    scaled = documents(KUBERNETES / "scaledobject.yaml")[0]
    assert scaled["spec"]["maxReplicaCount"] == Settings().topic_partitions
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["topic"] == "alerts"
    [hpa] = documents(KUBERNETES / "hpa.yaml")
    assert hpa["spec"]["maxReplicas"] == Settings().topic_partitions


def test_the_alert_rules_pass_promtool() -> None:
    done = run(tool("promtool"), "check", "rules", str(DEPLOY / "prometheus-rules.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_name_only_metrics_the_worker_exports() -> None:
    [rules] = documents(DEPLOY / "prometheus-rules.yml")
    named = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\brouter_[a-z_]+", rule["expr"])
    }
    assert named and named <= NAMES, named - NAMES


def test_router_api_has_a_deployment_and_service_on_its_port_with_probes() -> None:
    deployment, service = documents(KUBERNETES / "api.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["api"]
    assert container["ports"] == [{"name": "api", "containerPort": 8082}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {e["name"] for e in container["env"]} == {
        "ROUTER_API_WRITE_TOKENS_FILE",
        "ROUTER_API_READ_TOKENS_FILE",
    }
    assert service["spec"]["ports"] == [{"name": "api", "port": 8082, "targetPort": "api"}]
