"""deploy/ against the code: the Flex Template's metadata is the export command's options and
the launcher's command line becomes that command; the Terraform module makes exactly the role
split docs/operations.md shows and the table the store uses; the manifests set only variables
the CLI reads, probe routes that exist and the port the server listens on."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import click
import pytest

from predserve import flex_template
from predserve.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


# ---- the Dataflow Flex Template ----------------------------------------------------------
def test_the_template_metadata_is_generated_from_the_export_command() -> None:
    written = (DEPLOY / "dataflow/metadata.json").read_text()
    assert written == flex_template.render_metadata(), \
        "deploy/dataflow/metadata.json is stale: python -m predserve.flex_template > deploy/dataflow/metadata.json"
    names = [p["name"] for p in json.loads(written)["parameters"]]
    options = {max(o.opts, key=len) for o in main.commands["export"].params if isinstance(o, click.Option)}
    assert {"--" + n.replace("_", "-") for n in names} == options - {"--json", "--help"}
    required = {p["name"] for p in json.loads(written)["parameters"] if not p["isOptional"]}
    assert required == {"warehouse", "model", "key", "store"}


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("warehouse", "bigquery://my-project/analytics", "/tmp/wh.duckdb"),
    ("store", "bigtable://my-project/predserve/predictions", "lmdb:///data/store"),
    ("query", "SELECT user_id, p FROM ML.PREDICT(MODEL m, TABLE t)", "DROP TABLE users"),
    ("key", "region,user_id", "user id"),
    ("keep", "3", "three"),
    ("max_row_drop", "0.5", "half"),
    ("max_drift", ".25", "2"),
    ("allow_drift", "true", "yes"),
    ("column_max_drift", "score=0.2,plan=0.05", "score"),
    ("default_prediction", '{"p": 0}', "[0]"),
])
def test_each_parameter_has_a_regex_that_checks_its_shape(name: str, good: str, bad: str) -> None:
    parameters = {p["name"]: p for p in flex_template.template_metadata()["parameters"]}
    [regex] = parameters[name]["regexes"]
    assert re.fullmatch(regex, good) and not re.fullmatch(regex, bad)
    assert parameters[name]["helpText"]


def test_every_numeric_default_passes_its_own_regex() -> None:
    for option in flex_template.template_options():
        if isinstance(option.default, (int, float)) and not option.is_flag:
            assert re.fullmatch(flex_template.regex_for(option), str(option.default)), option.name


def test_the_launcher_command_line_becomes_predserve_export(tmp_path: Path) -> None:
    (tmp_path / "predserve-0.1.0-py3-none-any.whl").write_bytes(b"")
    args = flex_template.export_arguments([
        "--warehouse=bigquery://p/d", "--model=churn", "--key=user_id", "--query=SELECT a, b FROM t",
        "--store=bigtable://p/i/t", "--allow_drift=true", "--allow_empty=false", "--column_max_drift=a=0.1,b=0.2",
        "--runner=DataflowRunner", "--project=p", "--temp_location=gs://b/tmp"], wheel_dir=tmp_path)
    assert args == ["export", "--warehouse", "bigquery://p/d", "--model", "churn", "--key", "user_id",
                    "--query", "SELECT a, b FROM t", "--store", "bigtable://p/i/t", "--allow-drift",
                    "--column-max-drift", "a=0.1", "--column-max-drift", "b=0.2",
                    "--runner=DataflowRunner", "--project=p", "--temp_location=gs://b/tmp",
                    f"--extra_package={tmp_path / 'predserve-0.1.0-py3-none-any.whl'}"]
    chosen = flex_template.export_arguments(["--model=m", "--sdk_container_image=x"], wheel_dir=tmp_path)
    assert chosen == ["export", "--model", "m", "--sdk_container_image=x"]  # the caller's choice of how code ships wins
    with pytest.raises(click.BadParameter, match="--allow_drift takes true or false"):
        flex_template.export_arguments(["--allow_drift=yes"], wheel_dir=tmp_path)


def test_the_template_program_is_the_one_the_export_image_names() -> None:
    containerfile = (DEPLOY / "export.Containerfile").read_text()
    assert "COPY deploy/dataflow/main.py /template/main.py" in containerfile
    assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in containerfile
    assert 'ENTRYPOINT ["/opt/google/dataflow/python_template_launcher"]' in containerfile
    assert "from predserve.flex_template import launch" in (DEPLOY / "dataflow/main.py").read_text()


# ---- Terraform ---------------------------------------------------------------------------
TERRAFORM = DEPLOY / "terraform"
# where each kind of binding applies, in docs/operations.md's words
SCOPES = {
    "google_project_iam_member": "project",
    "google_bigtable_instance_iam_member": "Bigtable instance",
    "google_bigquery_dataset_iam_member": "BigQuery dataset",
    "google_storage_bucket_iam_member": "Dataflow bucket",
    "google_artifact_registry_repository_iam_member": "Artifact Registry repository",
    "google_service_account_iam_member": "pipeline service account",
    "google_secret_manager_secret_iam_member": "IAM secret",
    "google_pubsub_subscription_iam_member": "updates subscription",
    "google_pubsub_topic_iam_member": "dead-letter topic",
}


def unquoted(value: object) -> object:
    """python-hcl2 keeps string literals' quotes; strip them, recursively."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [unquoted(v) for v in value]
    if isinstance(value, dict):
        return {unquoted(k): unquoted(v) for k, v in value.items() if k != "__is_block__"}
    return value


def terraform_resources() -> dict[tuple[str, str], dict]:
    import hcl2

    resources = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            for block in unquoted(hcl2.load(handle)).get("resource", []):
                for kind, named in block.items():
                    for name, body in named.items():
                        resources[(kind, name)] = body
    return resources


def terraform_bindings() -> set[tuple[str, str, str]]:
    """(account id, role, scope) of every IAM binding the module makes."""
    resources = terraform_resources()
    bindings = set()
    for (kind, _), body in resources.items():
        if kind.endswith("_iam_member") or kind.endswith("_iam_binding"):
            assert kind in SCOPES, f"{kind}: a binding kind the docs' table has no scope for"
            account = re.fullmatch(r"\$\{google_service_account\.(\w+)\.member\}", body["member"])
            assert account, f"{kind} binds {body['member']}: only this module's service accounts get roles"
            account_id = resources[("google_service_account", account.group(1))]["account_id"]
            bindings.add((account_id, body["role"], SCOPES[kind]))
    return bindings


def test_terraform_is_formatted() -> None:
    result = subprocess.run(["terraform", "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_grants_the_seeds_role_split_and_nothing_broader() -> None:
    bindings = terraform_bindings()
    api = {(role, scope) for account, role, scope in bindings if account == "predserve-api"}
    pipeline = {(role, scope) for account, role, scope in bindings if account == "predserve-pipeline"}
    assert ("roles/bigtable.reader", "Bigtable instance") in api
    assert {role for role, _ in api} == {"roles/bigtable.reader", "roles/secretmanager.secretAccessor"}
    assert {("roles/dataflow.worker", "project"), ("roles/bigtable.user", "Bigtable instance"),
            ("roles/bigquery.readSessionUser", "project"), ("roles/storage.objectAdmin", "Dataflow bucket"),
            ("roles/bigquery.dataEditor", "BigQuery dataset")} <= pipeline
    roles = {role for _, role, _ in bindings}
    assert not roles & {"roles/owner", "roles/editor", "roles/bigtable.admin", "roles/iam.serviceAccountAdmin"}
    # `predserve stream` runs as the pipeline: it reads the updates and publishes the bad ones, nothing more
    assert {(r, s) for r, s in pipeline if r.startswith("roles/pubsub.")} == {
        ("roles/pubsub.subscriber", "updates subscription"), ("roles/pubsub.viewer", "updates subscription"),
        ("roles/pubsub.publisher", "dead-letter topic")}
    assert not {r for r, _ in api if r.startswith("roles/pubsub.")}
    # a store writer role never reaches the API's account, and the API's reader role is the only one it has on Bigtable
    assert not {r for r, _ in api if r.startswith("roles/bigtable.") and r != "roles/bigtable.reader"}


def test_terraform_creates_the_table_predserve_uses() -> None:
    from predserve.store.bigtable import DATA_FAMILY, META_FAMILY

    resources = terraform_resources()
    table = resources[("google_bigtable_table", "predictions")]
    families = {f["family"] for f in table["column_family"]}
    assert families == {DATA_FAMILY, META_FAMILY}
    policies = {body["column_family"]: body for (kind, _), body in resources.items() if kind == "google_bigtable_gc_policy"}
    assert set(policies) == families and all(p["max_version"][0]["number"] == 1 for p in policies.values())
    # the URL the API and the export are given names the module's project, instance and table
    services = (TERRAFORM / "services.tf").read_text()
    url = re.search(r'store_url\s*=\s*"(bigtable://[^"]+)"', services).group(1)
    assert url == "bigtable://${var.project}/${google_bigtable_instance.store.name}/${google_bigtable_table.predictions.name}"
    assert url.removeprefix("bigtable://").count("/") == 2  # PROJECT/INSTANCE/TABLE, as BigtableStore.from_url parses


def test_the_operations_binding_table_is_the_module() -> None:
    text = (ROOT / "docs/operations.md").read_text()
    section = text[text.index("## Google Cloud roles"):]
    rows = re.findall(r"^\| `([\w-]+)` \| `(roles/[\w.]+)` \| ([^|]+?) \|", section, re.M)
    assert rows and {(a, r, s.strip()) for a, r, s in rows} == terraform_bindings()


# ---- Cloud Run and Kubernetes manifests ------------------------------------------------------
CLOUD_RUN_PORT = 8080  # Cloud Run's PORT unless the service names another containerPort


def manifests() -> list[dict]:
    import yaml

    documents = []
    for path in [DEPLOY / "cloudrun/service.yaml", *sorted((DEPLOY / "kubernetes").glob("*.yaml"))]:
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def pod_spec(doc: dict) -> dict | None:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] == "Deployment" or doc["apiVersion"] == "serving.knative.dev/v1":
        return doc["spec"]["template"]["spec"]
    return None


def containers() -> list[tuple[str, dict]]:
    """(kind, container) of every pod template in the manifests."""
    return [(doc["kind"], c) for doc in manifests() for c in (pod_spec(doc) or {}).get("containers", [])]


def serve_variables() -> set[str]:
    names: set[str] = set()
    for param in main.commands["serve"].params:
        envvar = getattr(param, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


def test_the_manifests_hold_every_kind_the_deployment_needs() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in manifests()}
    assert {("serving.knative.dev/v1", "Service"), ("apps/v1", "Deployment"), ("v1", "Service"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"), ("batch/v1", "CronJob"), ("v1", "ServiceAccount")} <= kinds
    accounts = {d["metadata"]["name"]: d["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
                for d in manifests() if d["kind"] == "ServiceAccount"}
    assert set(accounts) == {"predserve-api", "predserve-pipeline"}  # Workload Identity for both accounts
    assert all(email.startswith(name + "@") for name, email in accounts.items())


def test_serve_containers_set_only_variables_predserve_serve_reads_and_probe_its_port(api_server, tmp_path: Path) -> None:
    from tests.support.snapshots import publish_rows

    store = str(tmp_path / "store")
    publish_rows(store, "churn", {"1": {"p": 1}})
    server = api_server(store, None, "--no-auth")
    serving = [(kind, c) for kind, c in containers() if "predserve-serve" in c["image"]]
    assert len(serving) == 2  # Cloud Run and the Deployment
    known = serve_variables() | {"PORT"}
    for kind, container in serving:
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert sorted(set(env) - known) == [], f"{kind} sets variables predserve serve does not read"
        assert env["PREDSERVE_STORE"].startswith("bigtable://")
        port = int(env.get("PREDSERVE_PORT", CLOUD_RUN_PORT))
        assert [p["containerPort"] for p in container["ports"]] == [port]
        probes = {name: container[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
        assert {p["httpGet"]["port"] for p in probes.values()} == {port}
        assert {probes["livenessProbe"]["httpGet"]["path"], probes["readinessProbe"]["httpGet"]["path"]} == {"/healthz", "/readyz"}
        with server.client() as client:
            for probe in probes.values():
                assert client.get(probe["httpGet"]["path"]).status_code == 200, probe
    [service] = [d for d in manifests() if d["kind"] == "Service" and d["apiVersion"] == "v1"]
    deployment_port = next(int(e["value"]) for k, c in serving if k == "Deployment" for e in c["env"] if e["name"] == "PREDSERVE_PORT")
    assert service["spec"]["ports"][0]["targetPort"] == deployment_port


def test_the_export_cronjob_runs_options_predserve_export_accepts() -> None:
    from predserve.pipeline.options import pipeline_options

    [(_, container)] = [(k, c) for k, c in containers() if k == "CronJob"]
    assert "predserve-export" in container["image"] and not container.get("env")
    context = main.commands["export"].make_context("export", list(container["args"]))
    assert context.params["store"].startswith("bigtable://") and context.params["warehouse"].startswith("bigquery://")
    options, _ = pipeline_options(context.args)  # the rest are Beam options Beam knows (else ExportError)
    assert options.get_all_options()["runner"] == "DataflowRunner"
