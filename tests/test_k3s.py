"""The K3s deployment: both overlays rendered by the real kubectl, every object validated
against the bundled Kubernetes schemas (offline), and the objects checked against each
other, the configuration loader and the `quorum` command-line parser."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from quorum.v1 import ensemble_pb2, inference_pb2
from server import config as config_module
from server import service as coordinator_service
from server.cli import build_parser
from server.config import Config
from worker import service as worker_service

ROOT = Path(__file__).resolve().parent.parent
K3S = ROOT / "deploy" / "k3s"
KUBECTL = Path(sys.executable).parent / "kubectl"
NAMESPACE = "finance-analysis"
CONFIGMAP = "finance-slm-ensemble"
CONFIG_MOUNT = "/etc/quorum"
METRICS_PORT = 9464
# Kubernetes 1.37 (the newest schemas in kubernetes-validate 1.37.0) and 1.35, two minor
# versions older. The schemas ship inside the package, so validation needs no network.
KUBERNETES_VERSIONS = ("1.35.0", "1.37.0")
# Flags of `quorum serve` and `quorum worker` that the metrics and tracing work adds. Until
# the parser has them they are the only arguments it may leave unparsed.
PENDING_FLAGS = {"--metrics-port": str(METRICS_PORT), "--otlp-endpoint": None}
# Reference worker machines: 16 cores and 118 GiB each.
NODE_CPU = 16.0
NODE_MEMORY = 118 * 2**30
REFERENCE_PLACEMENT = {
    "node-1": ("gemma-7b", "mistral-7b", "gemma-4b", "phi-3-mini"),
    "node-2": ("qwen-7b", "gemma-2b", "qwen-2.5b"),
}
REFERENCE_THREADS = {"node-1": 8, "node-2": 10}
REFERENCE_WEIGHTS = {
    "gemma-7b": 3.0,
    "mistral-7b": 3.0,
    "qwen-7b": 3.0,
    "gemma-4b": 1.5,
    "phi-3-mini": 1.5,
    "gemma-2b": 1.0,
    "qwen-2.5b": 1.0,
}
HEALTH_SERVICES = {
    "coordinator": coordinator_service.SERVICE_NAME,
    "worker": worker_service.SERVICE_NAME,
}


@dataclass(frozen=True)
class Workload:
    """A Deployment or CronJob with its pod template."""

    kind: str
    name: str
    pod: dict[str, Any]

    @property
    def labels(self) -> dict[str, str]:
        return self.pod["metadata"].get("labels", {})

    @property
    def spec(self) -> dict[str, Any]:
        return self.pod["spec"]

    @property
    def container(self) -> dict[str, Any]:
        containers = self.spec["containers"]
        if len(containers) != 1:
            pytest.fail(f"{self.kind}/{self.name} has {len(containers)} containers, expected 1")
        return containers[0]

    @property
    def component(self) -> str:
        return self.labels.get("app.kubernetes.io/component", "")


class Rendered:
    """The objects of one rendered kustomization."""

    def __init__(self, name: str, objects: list[dict[str, Any]]) -> None:
        self.name = name
        self.objects = objects

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.objects if item["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        matches = [item for item in self.of_kind(kind) if item["metadata"]["name"] == name]
        if len(matches) != 1:
            pytest.fail(f"{self.name}: {len(matches)} objects {kind}/{name}, expected 1")
        return matches[0]

    def workloads(self) -> list[Workload]:
        found = [
            Workload("Deployment", item["metadata"]["name"], item["spec"]["template"])
            for item in self.of_kind("Deployment")
        ]
        found += [
            Workload(
                "CronJob",
                item["metadata"]["name"],
                item["spec"]["jobTemplate"]["spec"]["template"],
            )
            for item in self.of_kind("CronJob")
        ]
        return found

    def workers(self) -> list[Workload]:
        return [item for item in self.workloads() if item.component == "worker"]

    def coordinator(self) -> Workload:
        found = [item for item in self.workloads() if item.component == "coordinator"]
        if len(found) != 1:
            pytest.fail(f"{self.name}: {len(found)} coordinator workloads, expected 1")
        return found[0]

    def analysis(self) -> Workload:
        found = [item for item in self.workloads() if item.kind == "CronJob"]
        if len(found) != 1:
            pytest.fail(f"{self.name}: {len(found)} CronJobs, expected 1")
        return found[0]

    def config(self, directory: Path) -> Config:
        """Load the ConfigMap with the real loader, laid out as the kubelet mounts it."""
        return load_configmap(self.get("ConfigMap", CONFIGMAP)["data"], directory)


def render(directory: Path) -> Rendered:
    completed = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed: {completed.stderr}")
    objects = [item for item in yaml.safe_load_all(completed.stdout) if item]
    return Rendered(str(directory), objects)


def load_configmap(data: dict[str, str], directory: Path) -> Config:
    """Write `data` as the kubelet mounts a ConfigMap and load it with the config loader.

    The kubelet writes the keys into a timestamped folder, links `..data` to it and links each
    key to `..data/KEY`. The loader must read the keys and skip the bookkeeping entries.
    """
    stamped = directory / "..2026_01_01_00_00_00.000000001"
    stamped.mkdir(parents=True)
    for key, value in data.items():
        (stamped / key).write_text(value)
    (directory / "..data").symlink_to(stamped.name)
    for key in data:
        (directory / key).symlink_to(Path("..data") / key)
    return config_module.load(directory)


def quantity(text: str | int | float) -> float:
    """Convert a Kubernetes quantity (8, 3500m, 20Gi, 512Mi) to cores or bytes."""
    value = str(text)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in suffixes.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def named_ports(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def model_argument(args: list[str]) -> str:
    return args[args.index("--model") + 1] if "--model" in args else ""


def parse_server_args(args: list[str]) -> Any:
    """Parse `quorum serve` or `quorum worker` args, allowing only the pending flags unknown."""
    parsed, unknown = build_parser().parse_known_args(args)
    while unknown:
        flag = unknown.pop(0)
        if flag not in PENDING_FLAGS:
            pytest.fail(f"argument {flag} in {args} is not a flag of the quorum command")
        value = unknown.pop(0)
        expected = PENDING_FLAGS[flag]
        if expected is not None and value != expected:
            pytest.fail(f"{flag} {value} in {args}, expected {expected}")
    return parsed


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module", params=["local", "reference"])
def overlay(request: pytest.FixtureRequest) -> Rendered:
    return render(K3S / "overlays" / request.param)


@pytest.fixture(scope="module")
def reference() -> Rendered:
    return render(K3S / "overlays" / "reference")


@pytest.fixture(scope="module")
def local() -> Rendered:
    return render(K3S / "overlays" / "local")


# Rendering and schemas


def test_overlay_renders_core_objects(overlay):
    kinds = Counter(item["kind"] for item in overlay.objects)
    assert kinds["Namespace"] == 1
    assert kinds["ConfigMap"] >= 1
    assert kinds["PersistentVolumeClaim"] == 2
    assert kinds["CronJob"] == 1
    assert kinds["Service"] == kinds["Deployment"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_overlay_objects_validate(overlay, version):
    for item in overlay.objects:
        where = f"{item['kind']}/{item['metadata']['name']}"
        try:
            kubernetes_validate.validate(item, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{where} is invalid for Kubernetes {version}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{where}: {error.message}")


def test_overlay_namespace(overlay):
    assert overlay.get("Namespace", NAMESPACE)
    for item in overlay.objects:
        if item["kind"] in ("Namespace", "PersistentVolume"):
            assert "namespace" not in item["metadata"], item["metadata"]["name"]
        else:
            assert item["metadata"].get("namespace") == NAMESPACE, item["metadata"]["name"]


def test_overlay_names_unique(overlay):
    keys = Counter((item["kind"], item["metadata"]["name"]) for item in overlay.objects)
    assert [key for key, count in keys.items() if count > 1] == []


# Labels, selectors, ports and probes


def test_deployment_selector_matches_template(overlay):
    for item in overlay.of_kind("Deployment"):
        selector = item["spec"]["selector"]["matchLabels"]
        labels = item["spec"]["template"]["metadata"]["labels"]
        assert selects(selector, labels), item["metadata"]["name"]


def test_deployment_selectors_disjoint(overlay):
    deployments = overlay.of_kind("Deployment")
    for item in deployments:
        selector = item["spec"]["selector"]["matchLabels"]
        matched = [
            other["metadata"]["name"]
            for other in deployments
            if selects(selector, other["spec"]["template"]["metadata"]["labels"])
        ]
        assert matched == [item["metadata"]["name"]]


def test_service_selects_one_deployment(overlay):
    for service in overlay.of_kind("Service"):
        matched = [
            item
            for item in overlay.workloads()
            if item.kind == "Deployment" and selects(service["spec"]["selector"], item.labels)
        ]
        assert len(matched) == 1, service["metadata"]["name"]


def test_service_target_ports_exist(overlay):
    for service in overlay.of_kind("Service"):
        workload = next(
            item
            for item in overlay.workloads()
            if item.kind == "Deployment" and selects(service["spec"]["selector"], item.labels)
        )
        ports = named_ports(workload.container)
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)
            assert ports[port["targetPort"]] == port["port"], (service["metadata"]["name"], port)


def test_server_probes_use_plaintext_health_port(overlay):
    # The API port runs TLS, which kubelet gRPC probes cannot speak; --health-port serves
    # grpc.health.v1 alone without TLS, and every probe targets it.
    for workload in overlay.workloads():
        if workload.kind != "Deployment":
            continue
        container = workload.container
        health_port = named_ports(container)["health"]
        args = container["args"]
        assert args[args.index("--health-port") + 1] == str(health_port), workload.name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == health_port, (workload.name, probe)


def test_readiness_probe_names_served_service(overlay):
    for workload in overlay.workloads():
        if workload.kind != "Deployment":
            continue
        probe = workload.container["readinessProbe"]["grpc"]
        assert probe["service"] == HEALTH_SERVICES[workload.component], workload.name


def test_health_service_names_match_proto():
    assert (
        HEALTH_SERVICES["coordinator"]
        == ensemble_pb2.DESCRIPTOR.services_by_name["Ensemble"].full_name
    )
    assert (
        HEALTH_SERVICES["worker"]
        == inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name
    )


def test_liveness_probe_checks_whole_server(overlay):
    for workload in overlay.workloads():
        if workload.kind == "Deployment":
            assert "service" not in workload.container["livenessProbe"]["grpc"], workload.name


def test_listen_port_is_grpc_port(overlay):
    for workload in overlay.workloads():
        if workload.kind != "Deployment":
            continue
        parsed = parse_server_args(workload.container["args"])
        port = int(parsed.listen.rpartition(":")[2])
        assert port == named_ports(workload.container)["grpc"], workload.name


def test_metrics_scrape_annotations(overlay):
    for workload in overlay.workloads():
        if workload.kind != "Deployment":
            continue
        annotations = workload.pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", workload.name
        assert annotations["prometheus.io/path"] == "/metrics", workload.name
        assert annotations["prometheus.io/port"] == str(METRICS_PORT), workload.name
        assert named_ports(workload.container)["metrics"] == METRICS_PORT, workload.name


def test_metrics_port_passed_in_args(overlay):
    for workload in overlay.workloads():
        if workload.kind != "Deployment":
            continue
        args = workload.container["args"]
        assert args[args.index("--metrics-port") + 1] == str(METRICS_PORT), workload.name


def test_arg_variables_defined(overlay):
    for workload in overlay.workloads():
        container = workload.container
        defined = {variable["name"] for variable in container.get("env", [])}
        for arg in container["args"]:
            for variable in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                assert variable in defined, (workload.name, arg)


def test_pods_run_as_non_root(overlay):
    for workload in overlay.workloads():
        context = workload.spec["securityContext"]
        assert context["runAsNonRoot"] is True, workload.name
        assert context["runAsUser"] != 0, workload.name
        assert workload.container["securityContext"]["allowPrivilegeEscalation"] is False


def test_image_is_project_version(overlay):
    for workload in overlay.workloads():
        assert workload.container["image"] == f"quorum:{project_version()}", workload.name


# Volumes and the configuration


def test_volumes_refer_to_rendered_objects(overlay):
    claims = {item["metadata"]["name"] for item in overlay.of_kind("PersistentVolumeClaim")}
    config_maps = {item["metadata"]["name"] for item in overlay.of_kind("ConfigMap")}
    for workload in overlay.workloads():
        for volume in workload.spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, workload.name
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, workload.name


def test_env_config_maps_rendered(overlay):
    config_maps = {item["metadata"]["name"]: item["data"] for item in overlay.of_kind("ConfigMap")}
    for workload in overlay.workloads():
        for variable in workload.container.get("env", []):
            reference = variable.get("valueFrom", {}).get("configMapKeyRef")
            if reference is not None:
                assert reference["key"] in config_maps[reference["name"]], workload.name


def test_config_mount_matches_config_arg(overlay):
    for workload in overlay.workloads():
        container = workload.container
        args = container["args"]
        assert args[args.index("--config") + 1] == CONFIG_MOUNT, workload.name
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == CONFIG_MOUNT)
        volume = next(v for v in workload.spec["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == CONFIGMAP, workload.name


def test_configmap_loads(overlay, tmp_path):
    config = overlay.config(tmp_path / "config")
    assert len(config.models) >= 2
    assert config.symbols != ()


def test_model_files_on_model_volume(overlay, tmp_path):
    config = overlay.config(tmp_path / "config")
    for workload in [*overlay.workers(), overlay.coordinator()]:
        mount = _claim_mount(workload, "model-storage")
        for model in config.models:
            assert model.path is not None, model.name
            assert Path(model.path).is_relative_to(mount), (workload.name, model.path)


def test_data_lake_on_result_store(overlay, tmp_path):
    config = overlay.config(tmp_path / "config")
    mount = _claim_mount(overlay.coordinator(), "result-store")
    assert Path(config.data_lake).is_relative_to(mount)


def _claim_mount(workload: Workload, claim: str) -> str:
    volume = next(
        volume["name"]
        for volume in workload.spec["volumes"]
        if volume.get("persistentVolumeClaim", {}).get("claimName") == claim
    )
    return next(
        mount["mountPath"]
        for mount in workload.container["volumeMounts"]
        if mount["name"] == volume
    )


# Workers and models


def test_each_model_one_worker(overlay, tmp_path):
    config = overlay.config(tmp_path / "config")
    served = Counter(model_argument(worker.container["args"]) for worker in overlay.workers())
    assert served == Counter(model.name for model in config.models)


def test_worker_args_name_model_label(overlay):
    for worker in overlay.workers():
        parsed = parse_server_args(worker.container["args"])
        assert parsed.command == "worker", worker.name
        assert parsed.model == worker.labels["quorum/model"], worker.name


def test_model_address_is_its_service(overlay, tmp_path):
    config = overlay.config(tmp_path / "config")
    workers = {model_argument(worker.container["args"]): worker for worker in overlay.workers()}
    for model in config.models:
        host, _, port = model.address.rpartition(":")
        service = overlay.get("Service", host)
        assert selects(service["spec"]["selector"], workers[model.name].labels), model.name
        grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert int(port) == grpc["port"], model.name


def test_worker_threads_equal_cpu_limit(overlay, tmp_path):
    config = overlay.config(tmp_path / "config")
    for worker in overlay.workers():
        model = config.model(model_argument(worker.container["args"]))
        limit = quantity(worker.container["resources"]["limits"]["cpu"])
        assert model.threads == limit, model.name


def test_worker_requests_within_limits(overlay):
    for worker in overlay.workers():
        resources = worker.container["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            assert request <= quantity(resources["limits"][resource]), (worker.name, resource)


def test_coordinator_args_parse(overlay):
    parsed = parse_server_args(overlay.coordinator().container["args"])
    assert parsed.command == "serve"
    assert parsed.worker == []


# The analysis CronJob


def test_cronjob_command_parses(overlay):
    parsed = build_parser().parse_args(overlay.analysis().container["args"])
    assert parsed.command == "analyze"
    assert parsed.all_symbols
    assert parsed.at is None


def test_cronjob_targets_coordinator_service(overlay):
    parsed = build_parser().parse_args(overlay.analysis().container["args"])
    host, _, port = parsed.coordinator.rpartition(":")
    service = overlay.get("Service", host)
    assert selects(service["spec"]["selector"], overlay.coordinator().labels)
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert int(port) == grpc["port"]


def test_cronjob_fires_at_window_closes(overlay, tmp_path):
    config = overlay.config(tmp_path / "config")
    cronjob = overlay.get("CronJob", "quorum-analysis")["spec"]
    minute, hour, day, month, weekday = cronjob["schedule"].split()
    window = config.market_window_minutes
    fired = {int(value) for value in minute.split(",")}
    assert fired == set(range(0, 60, window))
    assert (hour, day, month, weekday) == ("*", "*", "*", "*")
    assert cronjob["timeZone"] == "Etc/UTC"


def test_cronjob_run_ends_before_next(overlay):
    spec = overlay.get("CronJob", "quorum-analysis")["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 3600


# The reference overlay


def test_reference_configmap_matches_reference_yaml(reference, tmp_path):
    deployed = reference.config(tmp_path / "config")
    bundled = config_module.load(ROOT / "server" / "configs" / "reference.yaml")
    ignored = {"source_path": "", "data_lake": "", "coordinator_listen": ""}
    assert replace(deployed, **ignored) == replace(bundled, **ignored)


def test_reference_weights(reference, tmp_path):
    config = reference.config(tmp_path / "config")
    assert {model.name: model.weight for model in config.models} == REFERENCE_WEIGHTS


def test_reference_every_pod_placed(reference):
    for workload in reference.workloads():
        spec = workload.spec
        placed = "nodeSelector" in spec or "affinity" in spec
        assert placed, workload.name


def test_reference_models_split_by_node(reference):
    nodes: dict[str, list[str]] = {}
    for worker in reference.workers():
        nodes.setdefault(_worker_node(worker), []).append(worker.labels["quorum/model"])
    assert {node: sorted(models) for node, models in nodes.items()} == {
        node: sorted(models) for node, models in REFERENCE_PLACEMENT.items()
    }


def test_reference_threads_by_node(reference, tmp_path):
    config = reference.config(tmp_path / "config")
    for worker in reference.workers():
        model = config.model(worker.labels["quorum/model"])
        assert model.threads == REFERENCE_THREADS[_worker_node(worker)], model.name


@pytest.mark.parametrize("node", sorted(REFERENCE_PLACEMENT))
def test_reference_requests_fit_node(reference, node):
    cpu = 0.0
    memory = 0.0
    for item in reference.of_kind("Deployment"):
        worker = Workload("Deployment", item["metadata"]["name"], item["spec"]["template"])
        if worker.component != "worker" or _worker_node(worker) != node:
            continue
        replicas = item["spec"]["replicas"]
        requests = worker.container["resources"]["requests"]
        cpu += replicas * quantity(requests["cpu"])
        memory += replicas * quantity(requests["memory"])
    assert cpu <= NODE_CPU
    assert memory <= NODE_MEMORY


@pytest.mark.parametrize("node", sorted(REFERENCE_PLACEMENT))
def test_reference_memory_limits_fit_node(reference, node):
    memory = sum(
        quantity(worker.container["resources"]["limits"]["memory"])
        for worker in reference.workers()
        if _worker_node(worker) == node
    )
    assert memory <= NODE_MEMORY


def test_reference_rollout_needs_no_spare_node(reference):
    for item in reference.of_kind("Deployment"):
        strategy = item["spec"]["strategy"]
        surge = strategy.get("rollingUpdate", {}).get("maxSurge", 0)
        assert strategy["type"] == "Recreate" or surge == 0, item["metadata"]["name"]


def test_reference_other_pods_on_data_server(reference):
    for workload in reference.workloads():
        if workload.component == "worker":
            continue
        selector = workload.spec["nodeSelector"]
        assert selector == {"node-role.kubernetes.io/control-plane": "true"}, workload.name


def test_reference_model_volume_read_only_many(reference):
    claim = reference.get("PersistentVolumeClaim", "model-storage")["spec"]
    volume = reference.get("PersistentVolume", claim["volumeName"])["spec"]
    assert claim["accessModes"] == ["ReadOnlyMany"]
    assert "ReadOnlyMany" in volume["accessModes"]
    assert volume["claimRef"] == {"namespace": NAMESPACE, "name": "model-storage"}
    assert quantity(volume["capacity"]["storage"]) >= quantity(
        claim["resources"]["requests"]["storage"]
    )


def test_reference_sends_traces(reference):
    for workload in reference.workloads():
        if workload.kind != "Deployment":
            continue
        args = workload.container["args"]
        assert args[args.index("--otlp-endpoint") + 1] == "$(OTEL_EXPORTER_OTLP_ENDPOINT)"


def _worker_node(worker: Workload) -> str:
    terms = worker.spec["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    (term,) = terms["nodeSelectorTerms"]
    (expression,) = term["matchExpressions"]
    assert expression["key"] == "quorum/worker-node"
    assert expression["operator"] == "In"
    (node,) = expression["values"]
    return node


# The local overlay


def test_local_models_match_local_yaml(local, tmp_path):
    deployed = local.config(tmp_path / "config")
    bundled = config_module.load(ROOT / "server" / "configs" / "local.yaml")
    assert [(m.name, m.weight) for m in deployed.models] == [
        (m.name, m.weight) for m in bundled.models
    ]
    assert deployed.symbols == bundled.symbols


def test_local_one_node(local):
    for workload in local.workloads():
        assert "affinity" not in workload.spec, workload.name
        assert "nodeSelector" not in workload.spec, workload.name


# TLS: both overlays include the tls component, since pods listen off loopback


def _mount_path(workload: Workload, volume_name: str, secret: str) -> str:
    volume = next(v for v in workload.spec["volumes"] if v["name"] == volume_name)
    assert volume["secret"]["secretName"] == secret, workload.name
    mount = next(m for m in workload.container["volumeMounts"] if m["name"] == volume_name)
    assert mount["readOnly"] is True, workload.name
    return mount["mountPath"]


def test_tls_secret_mounted_where_config_reads_it(overlay, tmp_path):
    security = overlay.config(tmp_path / "config").security
    for workload in overlay.workloads():
        directory = _mount_path(workload, "tls", "quorum-tls")
        for path in (security.tls_cert_file, security.tls_key_file, security.tls_ca_file):
            assert Path(path).parent == Path(directory), (workload.name, path)


def test_tokens_mounted_for_coordinator_and_job(overlay, tmp_path):
    security = overlay.config(tmp_path / "config").security
    for workload in (overlay.coordinator(), overlay.analysis()):
        directory = _mount_path(workload, "api-tokens", "quorum-api-tokens")
        assert Path(security.auth_token_file).parent == Path(directory), workload.name


def test_cluster_config_runs_mutual_tls(overlay, tmp_path):
    security = overlay.config(tmp_path / "config").security
    assert (security.insecure, security.tls_client_auth) == (False, True)


# The image recipe (docker is not available here, so the Dockerfile is read, not built)


@dataclass(frozen=True)
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]]


def dockerfile_stages() -> tuple[dict[str, str], list[Stage]]:
    """Split deploy/k3s/Dockerfile into global ARG defaults and stages of instructions."""
    text = (K3S / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            base = re.sub(r"\$\{(\w+)\}", lambda match: arguments[match.group(1)], parts[0])
            stages.append(Stage(base, name, []))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            arguments[key] = value.strip('"')
        else:
            stages[-1].instructions.append((keyword, rest))
    return arguments, stages


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        pins[name.strip().lower()] = version.strip()
    return pins


def test_dockerfile_multi_stage():
    _, stages = dockerfile_stages()
    assert len(stages) >= 2
    assert stages[0].name == "build"


def test_dockerfile_final_user_non_root():
    _, stages = dockerfile_stages()
    users = [rest for keyword, rest in stages[-1].instructions if keyword == "USER"]
    assert users != []
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_dockerfile_uid_matches_pods(overlay):
    _, stages = dockerfile_stages()
    user = [rest for keyword, rest in stages[-1].instructions if keyword == "USER"][-1]
    for workload in overlay.workloads():
        assert workload.spec["securityContext"]["runAsUser"] == int(user.split(":")[0])


def test_dockerfile_copies_no_models():
    _, stages = dockerfile_stages()
    allowed = {"pyproject.toml", "setup.py", "README.md", "LICENSE", "proto", "fastpath"}
    allowed |= {"server", "worker"}
    for stage in stages:
        for keyword, rest in stage.instructions:
            if keyword not in ("COPY", "ADD"):
                continue
            assert keyword == "COPY", rest
            parts = [part for part in rest.split() if not part.startswith("--")]
            if "--from=build" in rest:
                continue
            for source in parts[:-1]:
                assert source in allowed, source
                assert not source.endswith(".gguf"), source


def test_dockerignore_excludes_models():
    ignored = (K3S / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**/*.gguf" in ignored
    assert "**/.venv" in ignored


def test_dockerfile_llama_pin_matches_pyproject():
    text = (K3S / "Dockerfile").read_text()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = _pins(dependencies)["llama-cpp-python"]
    assert re.findall(r"llama-cpp-python==([\w.]+)", text) == [pinned]


def test_dockerfile_pip_pin_matches_makefile():
    text = (K3S / "Dockerfile").read_text()
    makefile_pin = re.search(r'"pip==([\w.]+)"', (ROOT / "Makefile").read_text())
    assert makefile_pin is not None
    assert re.findall(r'"pip==([\w.]+)"', text) == [makefile_pin.group(1)]


def test_dockerfile_python_matches_project():
    _, stages = dockerfile_stages()
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    for stage in stages:
        assert stage.base.startswith(f"python:{target['python_version']}-"), stage.base


def test_dockerfile_llama_cpu_flags():
    arguments = dict(
        rest.partition("=")[::2]
        for stage in dockerfile_stages()[1]
        for keyword, rest in stage.instructions
        if keyword == "ARG"
    )
    flags = arguments["LLAMA_CMAKE_ARGS"].strip('"').split()
    assert "-DGGML_NATIVE=OFF" in flags
    assert "-DGGML_AVX2=ON" in flags
    # llama-cpp-python 0.3.x cannot load backends built as separate libraries.
    assert not any(flag.startswith("-DGGML_BACKEND_DL=ON") for flag in flags)


def test_dockerfile_entrypoint_is_quorum():
    _, stages = dockerfile_stages()
    entrypoints = [rest for keyword, rest in stages[-1].instructions if keyword == "ENTRYPOINT"]
    assert entrypoints == ['["quorum"]']
