"""Run a built image's root filesystem without a container engine (none works on these machines).

``unpack(archive, dest)`` reads an OCI archive as ``make image`` writes it (``index.json`` ->
manifest -> config and layers, each blob checked against its digest), applies the layers in
order with their whiteouts, and refuses any entry that would land outside ``dest`` (absolute
names, ``..``, a path through a symlink that leaves the tree, links to outside). ``start()``
runs the image's entrypoint in that tree as an engine would: its environment, working directory
and user from the image config, under ``unshare --mount --pid --fork`` + ``chroot`` with /proc,
/dev and a tmpfs /tmp mounted and the root filesystem read-only; the network (loopback) is the
host's, so servers on 127.0.0.1 are reachable both ways.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_JSON = 1 << 20  # index, manifest and config are small documents
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": False,
    "application/vnd.oci.image.layer.v1.tar+gzip": True,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": True,
}


class UnsafeImage(Exception):
    """The archive is malformed or an entry would escape the root filesystem."""


@dataclass
class Image:
    root: Path
    config: dict[str, Any]
    compressed_bytes: int  # the layers as stored in the archive
    layers: list[str] = field(default_factory=list)

    @property
    def process(self) -> dict[str, Any]:
        return self.config.get("config") or {}

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.process.get("Env") or [])

    @property
    def entrypoint(self) -> list[str]:
        return list(self.process.get("Entrypoint") or []) + list(self.process.get("Cmd") or [])

    @property
    def user(self) -> str:
        return self.process.get("User") or "0:0"

    @property
    def workdir(self) -> str:
        return self.process.get("WorkingDir") or "/"


def _blob(archive: tarfile.TarFile, digest: str) -> IO[bytes]:
    if not DIGEST.match(digest or ""):
        raise UnsafeImage(f"not a sha256 digest: {digest!r}")
    member = archive.getmember(f"blobs/sha256/{digest[7:]}")
    if not member.isfile():
        raise UnsafeImage(f"blob {digest} is not a regular file")
    handle = archive.extractfile(member)
    assert handle is not None
    return handle


def _checked_bytes(archive: tarfile.TarFile, digest: str, limit: int) -> bytes:
    data = _blob(archive, digest).read(limit + 1)
    if len(data) > limit:
        raise UnsafeImage(f"blob {digest} is larger than {limit} bytes")
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise UnsafeImage(f"blob {digest} does not match its digest")
    return data


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through, so a layer is checked while it is applied."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha = raw, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.sha.update(data)
        buffer[: len(data)] = data
        return len(data)


def unpack(archive_path: Path, dest: Path) -> Image:
    """Unpack the OCI archive's (single) image into ``dest``; return its config."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive_path) as archive:
        index = json.loads(archive.extractfile("index.json").read(MAX_JSON))  # type: ignore[union-attr]
        manifests = index.get("manifests") or []
        if len(manifests) != 1:
            raise UnsafeImage(f"{archive_path} holds {len(manifests)} images, expected one")
        manifest = json.loads(_checked_bytes(archive, manifests[0]["digest"], MAX_JSON))
        config = json.loads(_checked_bytes(archive, manifest["config"]["digest"], MAX_JSON))
        image = Image(dest, config, 0)
        for layer in manifest["layers"]:
            if layer.get("mediaType") not in LAYER_TYPES:
                raise UnsafeImage(f"unknown layer type {layer.get('mediaType')!r}")
            raw = _blob(archive, layer["digest"])
            hashing = _Hashing(raw)
            buffered = io.BufferedReader(hashing, 1 << 20)
            stream: IO[bytes] = gzip.GzipFile(fileobj=buffered) if LAYER_TYPES[layer["mediaType"]] else buffered
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                apply_layer(tar, dest)
            buffered.read()  # the rest of the blob, so the whole of it is hashed
            if "sha256:" + hashing.sha.hexdigest() != layer["digest"]:
                raise UnsafeImage(f"layer {layer['digest']} does not match its digest")
            image.compressed_bytes += int(layer["size"])
            image.layers.append(layer["digest"])
    return image


def _inside(dest: Path, path: str) -> Path:
    """``dest/path`` after checking that neither the name nor a symlink on the way leaves ``dest``."""
    name = posixpath.normpath("/" + path).lstrip("/")
    if path.startswith("/") or ".." in path.split("/") or not name or name == ".":
        raise UnsafeImage(f"entry {path!r} would leave the root filesystem")
    target = dest / name
    root = os.path.realpath(dest)
    parent = os.path.realpath(target.parent)
    if parent != root and not parent.startswith(root + os.sep):
        raise UnsafeImage(f"entry {path!r} goes through a symlink out of the root filesystem")
    return target


def _remove(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()


def apply_layer(tar: tarfile.TarFile, dest: Path) -> None:
    """One layer onto ``dest``: whiteouts delete, entries replace what earlier layers wrote."""
    for member in tar:
        head, _, base = member.name.rstrip("/").rpartition("/")
        if base == ".wh..wh..opq":  # an opaque directory: the lower layers' contents are hidden
            directory = _inside(dest, head) if head else dest
            if directory.is_dir() and not directory.is_symlink():
                for child in directory.iterdir():
                    _remove(child)
            continue
        if base.startswith(".wh."):
            whited = _inside(dest, f"{head}/{base[4:]}" if head else base[4:])
            if whited.exists() or whited.is_symlink():
                _remove(whited)
            continue
        if member.name.strip("/") in ("", "."):
            continue
        target = _inside(dest, member.name)
        if member.ischr() or member.isblk() or member.isfifo():
            continue  # device nodes come from the host's /dev, bind-mounted at run time
        if member.islnk():
            _inside(dest, member.linkname)
        if (target.exists() or target.is_symlink()) and not (member.isdir() and target.is_dir() and not target.is_symlink()):
            _remove(target)
        tar.extract(member, dest, set_attrs=True, numeric_owner=True, filter="fully_trusted")
        if member.isfile() and member.mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(target, member.mode & 0o777)  # no set-id programs: the tests never need privilege


def directory_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (not following symlinks): the image's unpacked size."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def start(image: Image, args: Sequence[str] | None = None, env: dict[str, str] | None = None,
          mounts: Sequence[tuple[Path, str] | tuple[Path, str, str]] = (), entrypoint: Sequence[str] | None = None, **popen: Any) -> subprocess.Popen:
    """Run the image's entrypoint (``args`` replace its Cmd) like an engine: config env and user,
    read-only root, tmpfs /tmp; ``mounts`` are (host path, path in the image[, "ro"]) bind mounts;
    ``entrypoint`` replaces the image's (as ``docker run --entrypoint`` does)."""
    root = shlex.quote(str(image.root))
    steps = ["set -e", "mount --make-rprivate /", f"mount --bind {root} {root}",
             f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev",
             f"mount -t tmpfs -o mode=1777,size=256m tmpfs {root}/tmp"]
    for host, inside, *mode in mounts:
        point = f"{root}/{shlex.quote(inside.lstrip('/'))}"
        steps += [f"mkdir -p {point}", f"mount --bind {shlex.quote(str(host))} {point}"]
        if mode == ["ro"]:
            steps.append(f"mount -o remount,bind,ro {point}")
    steps.append(f"mount -o remount,bind,ro {root}")
    process = image.process
    command = list(process.get("Entrypoint") or [] if entrypoint is None else entrypoint)
    command += list(process.get("Cmd") or [] if args is None else args)
    variables = {**image.env, "HOME": "/tmp", **(env or {})}
    run = ["chroot", f"--userspec={image.user}", str(image.root), "/usr/bin/env", "-i", "-C", image.workdir,
           *[f"{k}={v}" for k, v in variables.items()], *command]
    steps.append("exec " + " ".join(shlex.quote(part) for part in run))
    return subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", "\n".join(steps)],
                            start_new_session=True, **popen)


def entrypoint_pid(proc: subprocess.Popen) -> int:
    """The host pid of the image's entrypoint (pid 1 of its namespace): unshare's only child."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"unshare {proc.pid} has children {children}")
    return int(children[0])


def terminate(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM to the entrypoint, as an engine stops a container; its exit code."""
    try:
        os.kill(entrypoint_pid(proc), signal.SIGTERM)
    except (FileNotFoundError, ProcessLookupError, RuntimeError):
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
