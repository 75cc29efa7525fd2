"""``predserve iam``: the API's service accounts and roles."""

from __future__ import annotations

import json

import click

from predserve import settings
from predserve.cli.app import main
from predserve.cli.output import format_time, print_table


@main.group()
def iam() -> None:
    """Service accounts and roles for the API (keys are shown once).

    Changes are serialised across processes by a lock file beside the registry
    (IAM_FILE.lock), and reach running servers within 1 s."""


IAM_OPTION = click.option("--iam", "iam_path", envvar=settings.IAM_ENV, show_envvar=True,
                          help=f"service-account file (default: ./{settings.IAM_FILE})")
ROLE_OPTION = click.option("--role", type=click.Choice(["reader", "admin"]), default="reader", show_default=True)
KEY_ONLY_OPTION = click.option("--key-only", is_flag=True, help="print only the key (for scripts)")
MODELS_OPTION = click.option("--models", help="for readers: comma-separated models it may read (default: all)")


def _models(value: str | None) -> list[str] | None:
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


@iam.command("create")
@IAM_OPTION
@ROLE_OPTION
@MODELS_OPTION
@KEY_ONLY_OPTION
@click.argument("name")
def iam_create(iam_path: str | None, role: str, models: str | None, key_only: bool, name: str) -> None:
    """Create service account NAME with a role; prints its key once."""
    from predserve.iam import Registry

    account, key = Registry(iam_path).create(name, role, _models(models))
    if key_only:
        click.echo(key)
        return
    click.echo(f"created service account {account.name} with roles {json.dumps(account.roles)}")
    click.echo(f"key (shown only now; store it safely): {key}")


@iam.command("list")
@IAM_OPTION
def iam_list(iam_path: str | None) -> None:
    """List service accounts and their roles (never keys)."""
    from predserve.iam import Registry

    import pyarrow as pa

    accounts = Registry(iam_path).accounts()
    print_table(pa.Table.from_pylist(
        [{"name": a.name, "key_id": a.key_id, "roles": json.dumps(a.roles), "created_at": format_time(a.created_at)} for a in accounts],
        schema=pa.schema([("name", pa.string()), ("key_id", pa.string()), ("roles", pa.string()), ("created_at", pa.string())]),
    ), "table")


@iam.command("grant")
@IAM_OPTION
@ROLE_OPTION
@MODELS_OPTION
@click.argument("name")
def iam_grant(iam_path: str | None, role: str, models: str | None, name: str) -> None:
    """Grant a role to service account NAME."""
    from predserve.iam import Registry

    account = Registry(iam_path).grant(name, role, _models(models))
    click.echo(f"{account.name} now has roles {json.dumps(account.roles)}")


@iam.command("revoke")
@IAM_OPTION
@click.option("--role", type=click.Choice(["reader", "admin"]), required=True)
@click.argument("name")
def iam_revoke(iam_path: str | None, role: str, name: str) -> None:
    """Take a role away from service account NAME."""
    from predserve.iam import Registry

    account = Registry(iam_path).revoke(name, role)
    click.echo(f"{account.name} now has roles {json.dumps(account.roles)}")


@iam.command("rotate")
@IAM_OPTION
@KEY_ONLY_OPTION
@click.argument("name")
def iam_rotate(iam_path: str | None, key_only: bool, name: str) -> None:
    """Replace NAME's key; prints the new key once.

    The old key fails at once for servers started afterwards, and within 1 s on running
    servers (each re-reads the file at most once per second)."""
    from predserve.iam import Registry

    key = Registry(iam_path).rotate(name)
    click.echo(key if key_only else f"new key for {name} (shown only now): {key}")


@iam.command("delete")
@IAM_OPTION
@click.argument("name")
def iam_delete(iam_path: str | None, name: str) -> None:
    """Delete service account NAME; its key fails within 1 s on running servers."""
    from predserve.iam import Registry

    Registry(iam_path).delete(name)
    click.echo(f"deleted service account {name}")
