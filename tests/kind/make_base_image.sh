#!/bin/sh
# Make a local Debian base image for services/Dockerfile with no registry at all
# (tests/kind/test_image.py builds the real Dockerfile on it):
#
#   sudo sh tests/kind/make_base_image.sh [IMAGE] [DIR]
#
# Needs debootstrap, a running docker daemon and Debian's package mirror. The
# host's CA bundle goes into the image, and pip is pointed at it, so a build
# behind a TLS-intercepting proxy can still reach PyPI.
set -eu
IMAGE=${1:-scalelab-base:bookworm}
DIR=${2:-/tmp/scalelab-base}
if [ ! -x "$DIR/usr/bin/python3" ]; then
    debootstrap --variant=minbase --include=python3,python3-venv,tini,ca-certificates \
        bookworm "$DIR"
fi
cp /etc/ssl/certs/ca-certificates.crt "$DIR/etc/ssl/certs/ca-certificates.crt"
tar -C "$DIR" -c . | docker import \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' - "$IMAGE"
echo "made $IMAGE"
