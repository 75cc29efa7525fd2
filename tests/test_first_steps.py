"""What a newcomer trips over (issue 26): commands that never create a store by mistake, and
rollback / gc messages that say what is true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from predserve.cli import main
from predserve.store import open_store
from tests.support.bigtable import bigtable_url
from tests.support.snapshots import publish_rows

runner = CliRunner()
NO_STORE = "nothing has been exported there yet"
STREAM = ["--subscription", "projects/demo-project/subscriptions/updates", "--dead-letter-topic", "projects/demo-project/topics/dead"]


def refused(*args: str, stdin: str | None = None) -> str:
    """Run a command that must fail with one line (no traceback); what it printed."""
    result = runner.invoke(main, list(args), input=stdin)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


def commands_on(store: str) -> list[tuple[list[str], str | None]]:
    """Every command but export that takes --store, with what it needs to get as far as opening it."""
    return [
        (["rollback", "--store", store, "conv"], None),
        (["rollback", "--store", store, "conv", "1"], None),
        (["gc", "--store", store], None),
        (["gc", "--store", store, "conv", "--keep", "1", "--grace", "0"], None),
        (["snapshots", "--store", store, "conv"], None),
        (["diff", "--store", store, "conv"], None),
        (["push", "--store", store, "--model", "conv"], '{"id": "1", "delete": true}\n'),
        (["stream", "--store", store, "--model", "conv", *STREAM], None),
    ]


def test_a_mistyped_lmdb_store_is_refused_by_every_command_and_not_created(tmp_path: Path) -> None:
    wrong = tmp_path / "p" / "wrong.lmdb"
    for args, stdin in commands_on(str(wrong)) + commands_on(f"lmdb://{wrong}"):
        out = refused(*args, stdin=stdin)
        assert f"no store at {wrong}: {NO_STORE}" in out, (args, out)
        assert not (tmp_path / "p").exists(), args


def test_an_existing_empty_directory_is_not_turned_into_a_store(tmp_path: Path) -> None:
    for args, stdin in commands_on(str(tmp_path)):
        assert NO_STORE in refused(*args, stdin=stdin)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_bigtable_table_is_refused_and_not_created(bigtable_emulator: str) -> None:
    from google.cloud.bigtable import Client

    url = bigtable_url()
    for args, stdin in commands_on(url):
        out = refused(*args, stdin=stdin)
        assert f"no store at {url}: {NO_STORE}" in out, (args, out)
    project, instance, table = url.removeprefix("bigtable://").split("/")
    assert not Client(project=project, admin=True).instance(instance).table(table).exists()


def export(warehouse: Path, store: Path, query: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`predserve export` as a user runs it, its temporary files under ``tmp``."""
    return subprocess.run(
        [sys.executable, "-m", "predserve.cli", "export", "-w", str(warehouse), "--model", "churn", "--key", "user_id",
         "--store", str(store), "--query", query], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(tmp)},
    )


def test_a_failed_first_export_leaves_nothing_on_disk(trained_warehouse: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    store = tmp_path / "store.lmdb"
    failed = export(trained_warehouse, store, "SELECT user_id, no_such_column FROM users", tmp)
    assert failed.returncode == 1 and "no_such_column" in failed.stderr and "Traceback" not in failed.stderr
    assert not store.exists() and list(tmp.iterdir()) == []
    empty = export(trained_warehouse, store, "SELECT user_id, plan FROM users WHERE false", tmp)
    assert empty.returncode == 1 and "non_empty" in empty.stdout  # refused by a gate: nothing published, nothing kept
    assert not store.exists() and list(tmp.iterdir()) == []
    assert NO_STORE in refused("snapshots", "--store", str(store), "churn")


def test_a_failed_export_into_an_existing_store_keeps_it(trained_warehouse: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.lmdb"
    publish_rows(str(store), "other", {"1": {"v": 1}})
    failed = export(trained_warehouse, store, "SELECT user_id, no_such_column FROM users", tmp_path)
    assert failed.returncode == 1
    with open_store(str(store), readonly=True) as st:
        assert st.current("other") is not None


def test_open_store_refuses_to_create_when_told_not_to(store_url: str) -> None:
    from predserve.errors import StoreMissing

    with pytest.raises(StoreMissing, match=NO_STORE):
        with open_store(store_url, create=False) as st:
            st.models()  # Bigtable: the missing table shows at the first call
    with open_store(store_url) as st:  # create=True is the default of the library (and what export passes)
        assert st.models() == []
    with open_store(store_url, create=False) as st:
        assert st.models() == []


# ---- rollback and gc say what is true -------------------------------------------------------
def three_snapshots(store: str) -> None:
    for n in (1, 2, 3):
        publish_rows(store, "conv", {str(i): {"v": n} for i in range(10)})


def test_a_second_rollback_names_the_snapshots_it_could_go_to(tmp_path: Path) -> None:
    store = str(tmp_path / "s.lmdb")
    three_snapshots(store)
    for sid in (2, 1):
        assert f"conv now serves snapshot {sid}" in runner.invoke(main, ["rollback", "--store", store, "conv"]).output
    out = refused("rollback", "--store", store, "conv")
    assert ("no earlier snapshot to roll back to: no snapshot that was current before snapshot 1 is kept; "
            "to switch to another published one (2, 3), name it: ") in out
    assert f"predserve rollback --store lmdb://{store} conv 3" in out
    assert "only snapshot 1 was published" not in out


def test_rollback_with_one_snapshot_says_it_is_the_only_one(tmp_path: Path) -> None:
    store = str(tmp_path / "s.lmdb")
    publish_rows(store, "conv", {"1": {"v": 1}})
    assert "snapshot 1 is the only published snapshot kept" in refused("rollback", "--store", store, "conv")


def test_gc_says_which_snapshots_the_grace_period_kept_and_until_when(tmp_path: Path) -> None:
    store = str(tmp_path / "s.lmdb")
    three_snapshots(store)
    out = runner.invoke(main, ["gc", "--store", store, "--keep", "1"]).output
    assert "nothing to collect" not in out
    assert out.startswith("nothing deleted\n")
    for sid in (1, 2):
        assert f"kept conv snapshot {sid} for the grace period, until 20" in out
    assert "--grace 0 deletes it now" in out
    forced = runner.invoke(main, ["gc", "--store", store, "--keep", "1", "--grace", "0"]).output
    assert "deleted conv snapshot 1" in forced and "deleted conv snapshot 2" in forced and "grace period" not in forced
    assert runner.invoke(main, ["gc", "--store", store, "--keep", "1"]).output == "nothing to collect\n"
