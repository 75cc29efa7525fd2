"""deploy/ against the code: the Flex Template's metadata is the export command's options, and
the launcher's command line becomes that command."""

from __future__ import annotations

import json
import re
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
