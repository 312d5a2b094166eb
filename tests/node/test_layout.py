"""The two-node layout, on the local node and on kind, checked without a cluster."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import yaml

from tests.node.nodeparts import ROOT, lab, layout


def test_each_node_has_its_own_pod_range_bridge_and_link_inside_the_cluster_range() -> None:
    cluster = ipaddress.ip_network(layout.CLUSTER_CIDR)
    specs = layout.ALL_NODES
    subnets = [ipaddress.ip_network(s.pod_subnet) for s in specs]
    transits = [ipaddress.ip_network(f"{s.transit[0]}/30", strict=False) for s in specs[1:]]
    every = subnets + transits
    assert all(n.subnet_of(cluster) for n in every)  # type: ignore[arg-type]
    assert not any(a.overlaps(b) for i, a in enumerate(every) for b in every[i + 1:])
    assert all(ipaddress.ip_address(s.ip) in net for s, net in zip(specs, subnets, strict=True))
    assert specs[0].ip == layout.GATEWAY and specs[0].netns is None and specs[0].enter() == []
    assert len({s.bridge for s in specs}) == len({s.name for s in specs}) == len(specs)
    second = specs[1]
    assert second.netns == second.name == "scalelab-node-2"
    assert second.enter()[:2] == ["nsenter", f"--net={layout.NETNS_DIR / second.name}"]
    assert [s.role for s in specs] == ["primary", "secondary"]


def test_with_two_nodes_the_harness_pods_are_placed_on_the_first(tmp_path: Path) -> None:
    one = json.loads((lab.render_overlay("kind", 1, tmp_path / "one") / "kustomization.yaml")
                     .read_text())
    assert "patches" not in one
    two = json.loads((lab.render_overlay("kind", 2, tmp_path / "two") / "kustomization.yaml")
                     .read_text())
    pinned = {p["target"]["name"]: json.loads(p["patch"])["spec"]["template"]["spec"]
              for p in two["patches"]}
    for redis in ("redis-ledger", "redis-broker"):
        assert pinned[redis] == {"nodeSelector": {layout.NODE_LABEL: "primary"}}
    assert "nodeAffinity" in pinned["api"]["affinity"]


def test_the_two_node_kind_config_maps_the_same_ports_to_the_primary_worker() -> None:
    one = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    two = yaml.safe_load((ROOT / "k8s" / "kind-two-nodes.yaml").read_text())
    assert two["name"] == one["name"] and two["networking"] == one["networking"]
    roles = [(n["role"], (n.get("labels") or {}).get(layout.NODE_LABEL)) for n in two["nodes"]]
    assert roles == [("control-plane", None), ("worker", "primary"), ("worker", "secondary")]
    assert two["nodes"][1]["extraPortMappings"] == one["nodes"][0]["extraPortMappings"]
    assert all("extraPortMappings" not in n for n in (two["nodes"][0], two["nodes"][2]))
