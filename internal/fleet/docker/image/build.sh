#!/bin/sh
# build.sh [TAG] — build the instance image of the docker fleet provider from
# Debian packages: what an app server of an autoscaling group runs.
#
# Why not a Dockerfile: build hosts often cannot pull from any registry, so
# the image is assembled from the Debian archive alone (debootstrap + apt) and
# turned into an image with `docker import`, like internal/build/builder/image.
#
# What is in it: php8.2-fpm and php8.2-cli (the fixture's bin/magento needs
# php8.2-xml), nginx-light, ca-certificates and procps (ps, pkill for
# operators). What is NOT in it: the mageflow agent. The provider bind-mounts
# the statically linked bin/mageflow-agent at /opt/mageflow/mageflow-agent, so
# a code change needs no image rebuild. /usr/local/bin/mageflow-instance (the
# image's CMD) starts it as the instance's agent and web server:
#
#   mageflow-agent --serve-web --group $MAGEFLOW_GROUP --host $MAGEFLOW_INSTANCE_ID
#
# Idempotent: the image carries a label with the sha256 of this script; if an
# image with TAG and the same checksum exists, nothing is done. Needs root
# (debootstrap, chroot) and a reachable Docker engine. MIRROR selects another
# Debian mirror; FORCE=1 rebuilds anyway.
set -eu

TAG="${1:-mageflow/instance:bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
LABEL_KEY="org.mageflow.instance.script-sha256"
PACKAGES="php8.2-fpm php8.2-cli php8.2-xml php8.2-mbstring nginx-light ca-certificates procps"

script_dir=$(cd "$(dirname "$0")" && pwd)
lib="$script_dir/../../../platform/debimage/rootfs.sh"
KIND=instance
# shellcheck source=../../../platform/debimage/rootfs.sh
. "$lib"
debimage_uptodate "$script_dir/build.sh" "$lib"
debimage_preflight
start=$(date +%s)
debimage_rootfs
debimage_install "$PACKAGES"

mkdir -p "$root/var/log/nginx" "$root/opt/mageflow" "$root/run/php" "$root/srv/mageflow"

cat >"$root/usr/local/bin/mageflow-instance" <<'ENTRY'
#!/bin/sh
# The instance's main process: the mounted mageflow agent, which also runs
# this instance's nginx + php-fpm (--serve-web). The provider sets
# MAGEFLOW_GROUP, MAGEFLOW_INSTANCE_ID and MAGEFLOW_CONFIG.
set -eu
bin=/opt/mageflow/mageflow-agent
if [ ! -x "$bin" ]; then
	echo "mageflow-instance: $bin is missing: mount the static bin/mageflow-agent there" >&2
	exit 1
fi
: "${MAGEFLOW_GROUP:?set by the docker fleet provider}"
: "${MAGEFLOW_INSTANCE_ID:?set by the docker fleet provider}"
exec "$bin" --serve-web --group "$MAGEFLOW_GROUP" --host "$MAGEFLOW_INSTANCE_ID" "$@"
ENTRY
chmod 755 "$root/usr/local/bin/mageflow-instance"

echo "==> docker import $TAG"
tar --numeric-owner -C "$root" -c . | docker import \
	--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	--change "ENV LANG=C.UTF-8" \
	--change "EXPOSE 80" \
	--change "CMD [\"/usr/local/bin/mageflow-instance\"]" \
	--change "LABEL $LABEL_KEY=$sum" \
	--change "LABEL org.opencontainers.image.title=mageflow-instance" \
	--change "LABEL org.opencontainers.image.base.name=debian:bookworm" \
	- "$TAG"

end=$(date +%s)
size=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "built $TAG in $((end - start))s, size $((size / 1024 / 1024)) MiB"
