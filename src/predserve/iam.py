"""Service accounts, keys and roles for the HTTP API.

A key is ``psk_<key id>_<secret>``: the key id finds the account, the secret is checked
against a SHA-256 hash with a constant-time comparison. Keys carry 256 bits of randomness,
so a fast hash is safe here (slow hashes protect low-entropy passwords). A key is shown once,
when it is created or rotated, and never stored or logged in clear.

Roles: ``reader`` (predictions of every model, or only of named ones) and ``admin`` (model
listing and detail, service-account management; admins may also read predictions).

The registry is a JSON file (mode 0600) written atomically. Every change is a
read-modify-write done under an exclusive lock on a file beside it (``iam.json.lock``, from the
``filelock`` library), so concurrent ``predserve iam`` commands and API calls in any number of
processes never undo each other's changes. A running API re-reads the file when it changes,
checked at most once per second (``RELOAD_EVERY``): a grant, revocation, rotation or deletion
applies to every server process within 1 s of the command returning, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from predserve import settings
from predserve.errors import PredserveError

ROLES = ("reader", "admin")
ALL_MODELS = "*"
NAME = re.compile(r"^[a-z][a-z0-9-]{2,62}$")
KEY = re.compile(r"^psk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
RELOAD_EVERY = 1.0  # seconds: the most a running server takes to see a change to the file
LOCK_TIMEOUT = 30.0  # seconds an edit waits for another process's edit to finish


class IamError(PredserveError):
    pass


@dataclass
class ServiceAccount:
    name: str
    key_id: str
    key_hash: str
    roles: dict[str, list[str]] = field(default_factory=dict)  # role -> models ("*" = all)
    created_at: float = field(default_factory=time.time)

    def can_read(self, model: str) -> bool:
        if "admin" in self.roles:
            return True
        models = self.roles.get("reader")
        return models is not None and (ALL_MODELS in models or model in models)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def public(self) -> dict[str, Any]:
        """What may be shown: everything but the key hash."""
        return {"name": self.name, "key_id": self.key_id, "roles": self.roles, "created_at": self.created_at}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_key() -> tuple[str, str, str]:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"psk_{key_id}_{secret}", key_id, _hash(secret)


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    """What tells one version of the file from another without reading it.

    Every save writes a new file and renames it over the old one, so the inode changes; the
    size and the nanosecond mtime catch an edit made in place (or an inode reused by the
    filesystem). The mtime alone is not enough: many filesystems keep it in coarse ticks, and a
    rotation does not change the size.
    """
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class Registry:
    """The service-account file; every change is written atomically under a cross-process lock."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path or settings.IAM_FILE)
        self._accounts: dict[str, ServiceAccount] = {}
        self._by_key_id: dict[str, ServiceAccount] = {}
        # Keys already verified since the file last changed: the hot path skips the hash.
        self._verified: dict[str, ServiceAccount] = {}
        # (Authorization header, model) pairs already allowed since the file last changed (auth.authorize).
        self.readers: dict[tuple[str, str], ServiceAccount] = {}
        self._identity: tuple[int, ...] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reload()

    # ---- persistence -------------------------------------------------------------------
    def reload(self) -> None:
        """Read the file again if it is not the version already loaded."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._set({})
            self._identity = None
            return
        if _identity(stat) == self._identity:
            return
        try:
            with self.path.open("rb") as f:
                identity = _identity(os.fstat(f.fileno()))  # the version actually read
                data = json.loads(f.read())
            accounts = {a["name"]: ServiceAccount(**a) for a in data.get("service_accounts", [])}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IamError(f"the service-account file {self.path} is damaged ({exc}); restore it or delete it and recreate accounts") from None
        self._set(accounts)
        self._identity = identity

    def reload_if_changed(self, every: float = RELOAD_EVERY) -> None:
        now = time.monotonic()
        if now - self._checked >= every:
            self._checked = now
            self.reload()

    def _set(self, accounts: dict[str, ServiceAccount]) -> None:
        self._accounts = accounts
        self._by_key_id = {a.key_id: a for a in accounts.values()}
        self._verified = {}
        self.readers = {}

    def _save(self) -> None:
        self._set(self._accounts)  # rebuild the key index, forget verified keys
        data = {"service_accounts": [asdict(a) for a in self._accounts.values()]}
        previous_mtime = self._identity[3] if self._identity else 0
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".iam-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
                # A strictly later mtime than the version it replaces, even within one tick of
                # a coarse filesystem clock: readers can never mistake the two versions.
                mtime = max(time.time_ns(), previous_mtime + 1)
                os.utime(f.fileno(), ns=(mtime, mtime))
                identity = _identity(os.fstat(f.fileno()))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._identity = identity

    @contextmanager
    def _editing(self) -> Iterator[None]:
        """One read-modify-write of the file, serialised across threads and processes.

        Under the lock: read the file as it is now, apply the change, write it back. A change
        that fails half-way is dropped (the next read starts from the file again).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{self.path}.lock", timeout=LOCK_TIMEOUT, mode=0o600)
        try:
            with self._lock, lock:
                self._identity = None  # always start from the file as it is now
                self.reload()
                try:
                    yield
                except BaseException:
                    self._identity = None
                    raise
                self._save()
        except Timeout:
            raise IamError(
                f"another process has held the lock {lock.lock_file} for {LOCK_TIMEOUT:.0f} s; "
                "wait for the other `predserve iam` command to finish and retry"
            ) from None

    # ---- queries -----------------------------------------------------------------------
    def accounts(self) -> list[ServiceAccount]:
        return sorted(self._accounts.values(), key=lambda a: a.name)

    def get(self, name: str) -> ServiceAccount:
        account = self._accounts.get(name)
        if account is None:
            raise IamError(f"no service account named {name!r}; see `predserve iam list`")
        return account

    def authenticate(self, key: str) -> ServiceAccount | None:
        """The account a bearer key belongs to, or None. Constant-time in the secret."""
        known = self._verified.get(key)
        if known is not None:
            return known
        match = KEY.match(key)
        if not match:
            return None
        account = self._by_key_id.get(match.group(1))
        expected = account.key_hash if account else _hash("")
        ok = hmac.compare_digest(_hash(match.group(2)), expected)
        if not ok or account is None:
            return None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = account
        return account

    # ---- changes -----------------------------------------------------------------------
    def create(self, name: str, role: str, models: list[str] | None = None) -> tuple[ServiceAccount, str]:
        """Create an account with one role; returns it and its key (shown only now)."""
        with self._editing():
            if not NAME.match(name):
                raise IamError(f"invalid account name {name!r}: 3-63 characters, lowercase letters, digits and '-', starting with a letter")
            if name in self._accounts:
                raise IamError(f"service account {name!r} already exists; use `predserve iam rotate {name}` for a new key")
            key, key_id, key_hash = _new_key()
            account = ServiceAccount(name, key_id, key_hash)
            self._grant(account, role, models)
            self._accounts[name] = account
        return account, key

    def grant(self, name: str, role: str, models: list[str] | None = None) -> ServiceAccount:
        with self._editing():
            account = self.get(name)
            self._grant(account, role, models)
        return account

    def revoke(self, name: str, role: str) -> ServiceAccount:
        with self._editing():
            account = self.get(name)
            if role not in account.roles:
                raise IamError(f"service account {name!r} does not have role {role!r}")
            del account.roles[role]
        return account

    def rotate(self, name: str) -> str:
        """A new key for ``name``. The old one fails at once for new processes and within
        ``RELOAD_EVERY`` (1 s) on running servers."""
        with self._editing():
            account = self.get(name)
            key, account.key_id, account.key_hash = _new_key()
        return key

    def delete(self, name: str) -> None:
        with self._editing():
            self.get(name)
            del self._accounts[name]

    @staticmethod
    def _grant(account: ServiceAccount, role: str, models: list[str] | None) -> None:
        if role not in ROLES:
            raise IamError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
        if role == "admin":
            if models:
                raise IamError("the admin role applies to every model; drop --models")
            account.roles["admin"] = [ALL_MODELS]
            return
        wanted = models or [ALL_MODELS]
        current = account.roles.get("reader", [])
        merged = [ALL_MODELS] if ALL_MODELS in wanted or ALL_MODELS in current else sorted(set(current) | set(wanted))
        account.roles["reader"] = merged
