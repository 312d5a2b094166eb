"""The node's certificates (a CA, one per component and per kubelet) and kubeconfigs.

Kept across runs: a certificate already in ``PKI`` is not made again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from localnode.layout import (
    ALL_NODES,
    API_SERVICE_IP,
    APISERVER,
    GATEWAY,
    NODE,
    PKI,
    STATE,
    NodeSpec,
)
from localnode.shell import run


@dataclass(frozen=True)
class Cert:
    name: str
    subject: str
    usage: str  # extendedKeyUsage
    sans: str = ""


def kubelet_certs(spec: NodeSpec) -> tuple[Cert, Cert]:
    """A kubelet's client certificate (the Node authorizer knows it by its CN) and its
    serving certificate (the API server checks it against the node's address)."""
    return (Cert(f"kubelet-client{spec.suffix}", f"/O=system:nodes/CN=system:node:{spec.name}",
                 "clientAuth"),
            Cert(f"kubelet{spec.suffix}", f"/CN={spec.name}", "serverAuth",
                 f"IP:{spec.ip},DNS:{spec.name}"))


CERTS = (
    Cert("apiserver", "/CN=kube-apiserver", "serverAuth",
         f"IP:{GATEWAY},IP:{API_SERVICE_IP},IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,"
         "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"),
    Cert("apiserver-kubelet-client", "/CN=kube-apiserver-kubelet-client", "clientAuth"),
    Cert("admin", "/O=system:masters/CN=scalelab-admin", "clientAuth"),
    Cert("controller-manager", "/CN=system:kube-controller-manager", "clientAuth"),
    Cert("scheduler", "/CN=system:kube-scheduler", "clientAuth"),
    Cert("kube-proxy", "/CN=system:kube-proxy", "clientAuth"),
    Cert("coredns", "/CN=scalelab-node:coredns", "clientAuth"),
    Cert("kube-router", "/CN=scalelab-node:kube-router", "clientAuth"),
    *(cert for spec in ALL_NODES for cert in kubelet_certs(spec)),
)
# kubeconfig file (in STATE) -> the certificate it authenticates with
KUBECONFIGS = {"admin": "admin", "controller-manager": "controller-manager",
               "scheduler": "scheduler", "kube-proxy": "kube-proxy", "coredns": "coredns",
               "kube-router": "kube-router"}


def make_pki() -> None:
    """A CA, a certificate per component, the service-account key pair (kept across runs)."""
    PKI.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = PKI / "ca.crt", PKI / "ca.key"
    if not ca_crt.exists():
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "3650",
            "-subj", "/CN=scalelab-node-ca")
    for c in CERTS:
        crt, key = PKI / f"{c.name}.crt", PKI / f"{c.name}.key"
        if crt.exists():
            continue
        ext = PKI / f"{c.name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,"
                       f"keyEncipherment\nextendedKeyUsage={c.usage}\n"
                       + (f"subjectAltName={c.sans}\n" if c.sans else ""))
        csr = PKI / f"{c.name}.csr"
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", csr, "-subj", c.subject)
        run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
            "-CAcreateserial", "-out", crt, "-days", "3650", "-extfile", ext)
        csr.unlink()
        ext.unlink()
    if not (PKI / "sa.key").exists():
        run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", PKI / "sa.key")
        run("openssl", "pkey", "-in", PKI / "sa.key", "-pubout", "-out", PKI / "sa.pub")
    for path in PKI.glob("*.key"):
        path.chmod(0o600)


def kubeconfig_text(cert: str, context: str = NODE) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": NODE, "cluster": {"server": APISERVER,
                                                "certificate-authority": str(PKI / "ca.crt")}}],
        "users": [{"name": cert, "user": {"client-certificate": str(PKI / f"{cert}.crt"),
                                          "client-key": str(PKI / f"{cert}.key")}}],
        "contexts": [{"name": context, "context": {"cluster": NODE, "user": cert}}],
    }, indent=1)


def write_kubeconfigs(specs: list[NodeSpec]) -> None:
    """The components' kubeconfigs in STATE, and each kubelet's in its node's directory."""
    make_pki()
    for name, cert in KUBECONFIGS.items():
        (STATE / f"{name}.kubeconfig").write_text(kubeconfig_text(cert))
    for spec in specs:
        spec.state.mkdir(parents=True, exist_ok=True)
        (spec.state / "kubelet.kubeconfig").write_text(
            kubeconfig_text(kubelet_certs(spec)[0].name))
