"""What the node leaves on the machine: listed (``leftovers``) and removed (``sweep``).

Idempotent, and safe after a crash: it finds things by where they are (our state
and run directories, our namespaces, bridges and links, our chains and comments),
not by what a run remembers having made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
from pathlib import Path

from localnode.layout import (
    ALL_NODES,
    BIN,
    CLUSTER_CIDR,
    COMMENT,
    NETNS_DIR,
    OUR_CHAINS,
    OUR_IPSETS,
    RUN,
    STATE,
    SYSCTLS,
)
from localnode.shell import run

OUR_JUMP = re.compile(r"-j (KUBE-|CNI-|SCALELAB-)")
NODE_DIRS = ("etcd", "kubelet", "cni-ipam", "containerd", "containerd-opt", "pod-logs")


def our_namespaces() -> list[str]:
    """The further nodes' network namespaces (``ip netns add`` pins them in NETNS_DIR)."""
    names = {s.netns for s in ALL_NODES if s.netns}
    return sorted(p.name for p in NETNS_DIR.glob("*") if p.name in names) \
        if NETNS_DIR.is_dir() else []


def our_mounts() -> list[str]:
    mine = []
    netns = {str(NETNS_DIR / s.netns) for s in ALL_NODES if s.netns}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if (point.startswith((str(STATE) + "/", str(RUN) + "/")) or point in netns
                or re.fullmatch(r"/(var/)?run/netns/cni-[0-9a-f-]+", point)):
            mine.append(point)
    return mine


def our_links() -> list[str]:
    """The host's bridges and links of ours, and every link enslaved to one of them."""
    ours = {s.bridge for s in ALL_NODES if s.first} | {s.veth for s in ALL_NODES if not s.first}
    links = []
    for dev in Path("/sys/class/net").iterdir():
        master = dev / "master"
        if dev.name in ours or (master.exists() and master.resolve().name in ours):
            links.append(dev.name)
    return links


def our_routes() -> list[str]:
    """Routes of the host's into the pod range (they go with our links)."""
    return run("ip", "-4", "route", "show", "root", CLUSTER_CIDR, check=False).splitlines()


def our_rules() -> list[str]:
    rules = []
    for save in ("iptables-save", "ip6tables-save"):
        if not shutil.which(save):
            continue
        for line in run(save, check=False).splitlines():
            if line.startswith(("-A", ":")) and (
                    OUR_CHAINS.search(line[1:].split()[0] if line[0] == ":" else line.split()[1])
                    or OUR_JUMP.search(line) or COMMENT in line):
                rules.append(f"{save.split('-')[0]}: {line}")
    return rules


def our_ipsets() -> list[str]:
    if not shutil.which("ipset"):
        return []
    return [n for n in run("ipset", "list", "-n", check=False).split() if OUR_IPSETS.match(n)]


def our_processes() -> list[str]:
    """Processes of the node: its binaries, its containerds and shims, containers' cgroups."""
    found = []
    markers = (f"{STATE}/", f"{RUN}/")  # containerd's config, the shims' address
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (proc / "cgroup").read_text()
            exe = ""
            with contextlib.suppress(OSError):
                exe = os.readlink(proc / "exe")
            if (exe.startswith(f"{BIN}/") or any(m in cmdline for m in markers)
                    or "/kubepods" in cgroup or ("node.py" in cmdline and "supervise" in cmdline)):
                if "node.py" in cmdline and "supervise" not in cmdline:
                    continue  # this command itself
                found.append(f"{proc.name} {cmdline.strip()[:120]}")
    return found


def leftovers() -> dict[str, list[str]]:
    return {"processes": our_processes(), "mounts": our_mounts(), "links": our_links(),
            "namespaces": our_namespaces(), "routes": our_routes(),
            "iptables": our_rules(), "ipsets": our_ipsets()}


def sweep() -> None:
    """Remove what the node left on the machine; idempotent, also after a crash."""
    for point in sorted(our_mounts(), key=len, reverse=True):
        if Path(point).parent == NETNS_DIR and not Path(point).name.startswith("cni-"):
            continue  # a node's namespace: `ip netns delete` below
        run("umount", "-l", point, check=False)
        if "/netns/" in point:
            Path(point).unlink(missing_ok=True)
    for ns in our_namespaces():
        # Its interfaces (the link's other end, its bridge), routes and rules go with it.
        run("ip", "netns", "delete", ns, check=False)
    for dev in our_links():
        if Path(f"/sys/class/net/{dev}/master").exists():
            run("ip", "link", "delete", dev, check=False)
    for dev in our_links():
        run("ip", "link", "delete", dev, check=False)
    if (BIN / "kube-proxy").exists():
        run(BIN / "kube-proxy", "--cleanup", check=False, timeout=60)
    remove_rules()
    remove_ipsets()  # after the rules that match on them
    restore_sysctls()
    remove_cgroups()
    for spec in ALL_NODES:
        for d in NODE_DIRS:
            shutil.rmtree(spec.state / d, ignore_errors=True)
        shutil.rmtree(spec.run / "containerd", ignore_errors=True)


def remove_rules() -> None:
    for family in ("iptables", "ip6tables"):
        if not shutil.which(family):
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            text = run(f"{family}-save", "-t", table, check=False)
            ours = [ln[1:].split()[0] for ln in text.splitlines()
                    if ln.startswith(":") and OUR_CHAINS.match(ln[1:])]
            for ln in text.splitlines():
                if not ln.startswith("-A "):
                    continue
                chain = ln.split()[1]
                if chain not in ours and (OUR_JUMP.search(ln) or COMMENT in ln):
                    run(family, "-t", table, "-D", *shlex.split(ln)[1:], check=False)
            for chain in ours:
                run(family, "-t", table, "-F", chain, check=False)
            for chain in ours:
                run(family, "-t", table, "-X", chain, check=False)


def remove_ipsets() -> None:
    for name in our_ipsets():
        run("ipset", "destroy", name, check=False)


def save_sysctls() -> None:
    path = STATE / "sysctls.json"
    if path.exists():
        return  # a crashed run's originals: keep them
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = Path("/proc/sys", key).read_text().strip()
    path.write_text(json.dumps(values))


def restore_sysctls() -> None:
    path = STATE / "sysctls.json"
    if not path.exists():
        return
    for key, value in json.loads(path.read_text()).items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value)
    path.unlink()


def cgroup_tops() -> list[str]:
    """Where each kubelet's pods' cgroups start: ``kubepods`` under its cgroup root."""
    return [f"{s.cgroup_root.strip('/')}/kubepods".lstrip("/") for s in ALL_NODES]


def remove_cgroups() -> None:
    roots = [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()] + [Path("/sys/fs/cgroup")]
    for root in roots:
        for top in [root / t for t in cgroup_tops()]:
            if not top.is_dir():
                continue
            for d in sorted((p for p in top.rglob("*") if p.is_dir()),
                            key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
        for spec in ALL_NODES:  # a further kubelet's own root, made for it at up
            if not spec.first:
                with contextlib.suppress(OSError):
                    (root / spec.cgroup_root.strip("/")).rmdir()
