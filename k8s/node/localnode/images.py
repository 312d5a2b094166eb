"""The node's images: built by images.sh when their inputs change, imported into
each node's containerd (its ``k8s.io`` namespace, where the CRI looks)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from localnode.layout import HERE, IMAGES, ROOT, NodeSpec
from localnode.shell import NodeError, log, run

ARCHIVES = ("pause", "redis", "scalelab")


def ctr(spec: NodeSpec, *args: str | Path, check: bool = True, timeout: float = 300) -> str:
    return run("ctr", "--address", spec.containerd_sock, "--namespace", "k8s.io", *args,
               check=check, timeout=timeout)


def import_image(spec: NodeSpec, archive: Path) -> None:
    # unpacked for the snapshotter the CRI uses, as `kind load` imports an image
    ctr(spec, "images", "import", "--snapshotter", "overlayfs", archive)


def import_images(spec: NodeSpec) -> None:
    for name in ARCHIVES:
        if (IMAGES / f"{name}.tar").exists():
            import_image(spec, IMAGES / f"{name}.tar")


def inputs_digest() -> str:
    """What the images are built from (services/Dockerfile's build context, the scripts)."""
    h = hashlib.sha256()
    files = [ROOT / "pyproject.toml", ROOT / "requirements.lock", ROOT / "services" / "Dockerfile",
             HERE / "images.sh", HERE / "versions.sh"]
    for pkg in ("services", "chaos", "experiments"):
        files += sorted(p for p in (ROOT / pkg).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    h.update(os.environ.get("IMAGE", "").encode())
    return h.hexdigest()


def build_images() -> None:
    """images.sh into IMAGES, unless the archives there were built from these inputs."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    stamp = IMAGES / "inputs.sha256"
    digest = inputs_digest()
    if stamp.exists() and stamp.read_text() == digest and all(
            (IMAGES / f"{n}.tar").exists() for n in ARCHIVES):
        log("images: unchanged since the last build")
        return
    started = time.monotonic()
    proc = subprocess.run([str(HERE / "images.sh"), str(IMAGES)], stdout=sys.stdout,
                          stderr=sys.stderr, check=False, timeout=1800)
    if proc.returncode != 0:
        raise NodeError(f"images.sh failed ({proc.returncode})")
    stamp.write_text(digest)
    log(f"images built in {time.monotonic() - started:.0f}s")
