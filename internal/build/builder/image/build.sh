#!/bin/sh
# build.sh [TAG] — build the mageflow builder image from Debian packages.
#
# Why not a Dockerfile: build hosts often cannot pull from any registry, so the
# image is assembled from the Debian archive alone (debootstrap + apt) and
# turned into an image with `docker import`. Everything a Magento build needs
# (PHP + extensions, composer, node/npm, git) comes from Debian bookworm, which
# also receives security updates through bookworm-security.
#
# Idempotent: the image carries a label with the sha256 of this script; if an
# image with TAG and the same checksum exists, nothing is done. Edit the
# package list below and the next run rebuilds.
#
# Needs root (debootstrap, chroot) and a reachable Docker engine. Set
# MIRROR to use another Debian mirror; set FORCE=1 to rebuild anyway.
#
# Production: build your own image (any Debian/Ubuntu base with the same
# tools, FROM this one or from scratch), push it to your registry and set
# `build.image: registry.example.com/you/builder:tag` in mageflow.yaml.
set -eu

TAG="${1:-mageflow/builder:bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
LABEL_KEY="org.mageflow.builder.script-sha256"

# Magento 2.4 requires bcmath ctype curl dom gd hash iconv intl mbstring
# openssl pdo_mysql simplexml soap sodium xsl zip; ctype/iconv/sodium/hash/
# openssl are built into Debian's php-cli. git/unzip let composer fetch
# sources and dists; nodejs/npm/yarnpkg build Hyvä/PWA/ScandiPWA themes.
PACKAGES="php-cli php-bcmath php-curl php-gd php-intl php-mbstring php-mysql \
php-soap php-xml php-zip composer git unzip nodejs npm yarnpkg ca-certificates"

script_dir=$(cd "$(dirname "$0")" && pwd)
lib="$script_dir/../../../platform/debimage/rootfs.sh"
KIND=builder
# shellcheck source=../../../platform/debimage/rootfs.sh
. "$lib"
debimage_uptodate "$script_dir/build.sh" "$lib"
debimage_preflight
start=$(date +%s)
debimage_rootfs
debimage_install "$PACKAGES"

# /cache is where the runner mounts its named cache volume; Docker copies these
# world-writable dirs into a fresh volume, so a non-root build user can write.
# Debian names yarn "yarnpkg"; recipes call it yarn.
ln -sf /usr/bin/yarnpkg "$root/usr/local/bin/yarn"
mkdir -p "$root/cache/composer" "$root/cache/npm" "$root/build"
chmod 1777 "$root/cache" "$root/cache/composer" "$root/cache/npm" "$root/build"

echo "==> docker import $TAG"
tar --numeric-owner -C "$root" -c . | docker import \
	--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	--change "ENV HOME=/tmp" \
	--change "ENV LANG=C.UTF-8" \
	--change "ENV COMPOSER_HOME=/cache/composer" \
	--change "ENV npm_config_cache=/cache/npm" \
	--change "ENV npm_config_update_notifier=false" \
	--change "ENV COMPOSER_NO_INTERACTION=1" \
	--change "WORKDIR /build" \
	--change "CMD [\"/bin/sh\"]" \
	--change "LABEL $LABEL_KEY=$sum" \
	--change "LABEL org.opencontainers.image.title=mageflow-builder" \
	--change "LABEL org.opencontainers.image.base.name=debian:bookworm" \
	- "$TAG"

end=$(date +%s)
size=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "built $TAG in $((end - start))s, size $((size / 1024 / 1024)) MiB"
