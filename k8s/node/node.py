#!/usr/bin/env python3
"""A Kubernetes cluster of one or two nodes on this machine, from the binaries build.sh caches.

The way Kubernetes' own hack/local-up-cluster.sh runs one: every component is a
plain process, here all children of one supervisor (``node.py supervise``), which
``up`` starts detached and ``down`` stops. Stopping it (SIGTERM, SIGINT) drains the
pods, stops the components in reverse order, and removes what they left: container
processes, mounts, network namespaces, veths, the bridge, iptables rules and the
kernel settings kubelet and kube-proxy change. ``leftovers`` lists whatever is left.

    node.py up [--overlay NAME] [--nodes N]
                                  start the node (if not running), build and import
                                  the images, apply k8s/overlays/NAME, wait for it
    node.py images                only build the images (skipped when nothing changed)
    node.py down                  stop everything; exit 1 if anything is left
    node.py isolate NODE [--how cut|freeze] | rejoin NODE
                                  node loss: cut a node off the API server (or stop
                                  its kubelet) while its containers keep running
    node.py status | nodes | leftovers | kubeconfig

With ``--nodes 2`` the second node, ``scalelab-node-2``, runs its containerd, kubelet
and kube-proxy in a network namespace of its own, as kind's node containers do, its
pods on their own bridge and /24 (localnode/layout.py has the addresses).

The network stays on this machine. Pods get addresses in 10.244.0.0/24 on the
bridge ``scalelab0`` (gateway 10.244.0.1, which is also where the API server,
kubelet and CoreDNS listen), with routes to the pod and Service ranges only: no
default route, no masquerade. The host forwards only from that bridge back into
it (per-interface forwarding; the global switch is untouched) and rejects
anything else a pod sends. kube-proxy answers NodePorts on 127.0.0.1 only, the
ports the kind cluster maps there. containerd gets an unreachable loopback proxy,
so an image that was not imported fails at once instead of being pulled.

NetworkPolicy: the bridge plugin has no policy engine (kind's kindnet has one).
kind's engine, kube-network-policies, cannot run here: it sends the first packet
of each connection to userspace with nftables' ``queue`` expression, which this
machine's kernel lacks (CONFIG_NFT_QUEUE unset: adding such a rule fails with
ENOENT); ``policy_engine_problem`` checks it. When build.sh has built kube-router
and Debian's ``ipset`` is installed, the node runs kube-router's firewall alone
(``--run-firewall``, no routing, no service proxy: iptables rules and ipsets,
which this kernel has) and enforces NetworkPolicy; otherwise it enforces none, and
the platform's partition fault fails with one line rather than cut nothing.
Everything else the lab's manifests use is enforced.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The node's parts are the package beside this script (localnode/__init__.py lists them).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from localnode.cli import main

if __name__ == "__main__":
    sys.exit(main())
