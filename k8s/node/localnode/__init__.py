"""The local node's parts, one job each; ``k8s/node/node.py`` is the command line.

layout      names, addresses, paths and releases; a ``NodeSpec`` per node
shell       one-line errors, running a command, waiting on a condition
pki         the CA, the components' certificates and their kubeconfig files
configs     each node's containerd, CNI, kubelet and kube-proxy configs, the Corefile
components  the command line of every component
network     bridges, the second node's namespace, the forwarding rule, node loss
supervisor  the process that runs the components and takes them down
sweep       what the node leaves on the machine: listed, and removed
images      the images images.sh builds, and their import into containerd
kubeconfig  kubectl, and the user's kubeconfig context
lab         the lab's overlay: rendered for the node, applied, waited on
cli         the commands: up, down, images, status, nodes, isolate, rejoin, ...
"""
