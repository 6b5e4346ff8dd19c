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
sum=$(sha256sum "$script_dir/build.sh" | cut -d' ' -f1)

if [ "${FORCE:-0}" != 1 ]; then
	have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL_KEY\"}}" "$TAG" 2>/dev/null || true)
	if [ "$have" = "$sum" ]; then
		echo "builder image $TAG is up to date (script sha256 $sum)"
		exit 0
	fi
fi

if [ "$(id -u)" != 0 ]; then
	echo "build.sh needs root for debootstrap/chroot: run it with sudo" >&2
	exit 1
fi
docker version >/dev/null 2>&1 || {
	echo "Docker engine not reachable: start it (systemctl start docker) and retry" >&2
	exit 1
}
if ! command -v debootstrap >/dev/null 2>&1; then
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
fi

start=$(date +%s)
root=$(mktemp -d /tmp/mageflow-builder-rootfs.XXXXXX)
cleanup() {
	# Unmount anything still mounted under the rootfs before deleting it, or
	# rm would descend into the host's /proc.
	for m in proc dev/pts dev sys; do
		umount "$root/$m" 2>/dev/null || true
	done
	rm -rf "$root"
}
trap cleanup EXIT INT TERM

echo "==> debootstrap bookworm into $root"
debootstrap --variant=minbase bookworm "$root" "$MIRROR"

cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
# Never keep downloaded .debs or install docs/recommends: keeps the image lean.
cat >"$root/etc/apt/apt.conf.d/90mageflow" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Options { "--force-confold"; };
EOF
cat >"$root/etc/dpkg/dpkg.cfg.d/90mageflow-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF

mount -t proc proc "$root/proc"
echo "==> apt-get install $PACKAGES"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
	sh -euc "apt-get update -q && apt-get -y -q upgrade && apt-get install -y -q $PACKAGES && apt-get clean"
umount "$root/proc"

# Drop caches and logs that only describe this build.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
	"$root"/var/log/* "$root"/tmp/* "$root"/root/.npm "$root"/root/.cache
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
