"""The deploy/ examples are valid: compose.yaml against the Compose Specification's JSON schema (vendored by
check-jsonschema), the Kubernetes manifest against Kubernetes' own schemas (kubernetes-validate), and both
wire up what the README promises."""

import base64
import copy
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.config import Environment, Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def compose_errors(path: Path) -> str:
    done = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "" if done.returncode == 0 else done.stdout + done.stderr


def placeholder(match: re.Match[str]) -> str:
    """A value for an operator-supplied variable, shaped as that variable needs (a Fernet key, whsec_…)."""
    name = match.group(1)
    if name == "ENCRYPTION_KEY":
        return base64.urlsafe_b64encode(b"compose-example-encryption-key!!").decode()
    if name == "WEBHOOK_SECRET":
        return "whsec_" + base64.b64encode(b"compose-example").decode()
    return f"compose-example-{name.lower()}"


class TestCompose:
    def test_is_valid_against_the_compose_specification(self):
        assert compose_errors(DEPLOY / "compose.yaml") == ""

    def test_the_validator_refuses_a_broken_file(self, tmp_path):
        broken = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
        broken["services"]["bff"]["replica"] = 2  # not a Compose key
        (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))

        assert "replica" in compose_errors(tmp_path / "compose.yaml")

    def test_its_environment_passes_the_prod_configuration_checks(self, monkeypatch):
        # Every `${VAR:?…}` the operator must set is given a value; what compose.yaml sets itself must
        # then be enough for prod's checks (a new required setting would otherwise break the example).
        environment = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["x-bff"]["environment"]
        for name, value in environment.items():
            monkeypatch.setenv(name, re.sub(r"\$\{(\w+):\?[^}]*\}", placeholder, str(value)))

        assert Settings().environment is Environment.prod

    def test_migrate_runs_once_before_two_serve_replicas_a_worker_and_prometheus(self):
        services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]

        assert services["migrate"]["command"] == ["bankfeeds-bff", "migrate"]
        assert services["bff"]["deploy"]["replicas"] == 2
        for name in ("bff", "worker"):
            assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services["worker"]["command"] == ["bankfeeds-bff", "worker"]
        scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
        targets = {(c["dns_sd_configs"][0]["names"][0], c["dns_sd_configs"][0]["port"]) for c in scrape}
        assert targets == {("bff", 8000), ("worker", 9101)}


def manifests() -> list[dict]:  # type: ignore[type-arg]
    return list(yaml.safe_load_all((DEPLOY / "k8s" / "bankfeeds-bff.yaml").read_text()))


class TestKubernetes:
    @pytest.mark.parametrize("manifest", manifests(), ids=lambda m: f"{m['kind']}/{m['metadata']['name']}")
    def test_is_valid_against_kubernetes_schemas(self, manifest):
        kubernetes_validate.validate(manifest, kubernetes_validate.utils.latest_version(), strict=True)

    def test_the_validator_refuses_a_broken_manifest(self):
        deployment = copy.deepcopy(next(m for m in manifests() if m["kind"] == "Deployment"))
        deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"

        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, kubernetes_validate.utils.latest_version(), strict=True)

    def test_serve_has_its_probes_and_a_grace_longer_than_the_shutdown_grace_and_a_pdb(self):
        by_kind = {(m["kind"], m["metadata"]["name"]): m for m in manifests()}
        pod = by_kind[("Deployment", "bankfeeds-bff")]["spec"]["template"]["spec"]
        (serve,) = pod["containers"]

        assert serve["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert serve["startupProbe"]["httpGet"]["path"] == "/livez"
        assert serve["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["terminationGracePeriodSeconds"] > 10 + serve["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert by_kind[("PodDisruptionBudget", "bankfeeds-bff")]["spec"]["minAvailable"] == 1
        assert ("Job", "bankfeeds-bff-migrate") in by_kind
        assert ("Deployment", "bankfeeds-bff-worker") in by_kind
