# rootfs.sh — sourced by the image scripts (internal/build/builder/image,
# internal/fleet/docker/image): what building an image from Debian packages
# alone takes, once. A script sets TAG, MIRROR, SECURITY_MIRROR, LABEL_KEY and
# KIND (a word for messages), sources this file, then calls:
#
#   debimage_uptodate "$script_dir/build.sh" "$lib"
#                                             exits 0 when TAG carries the two
#                                             scripts' checksum (FORCE=1 rebuilds)
#   debimage_preflight                        root, Docker, debootstrap
#   debimage_rootfs                           sets $root: a minbase bookworm with
#                                             lean apt settings, removed on exit
#   debimage_install "$PACKAGES"              apt-get install in the chroot (no
#                                             services started), caches dropped
#
# The image's label is the sha256 of the calling script and this file
# ($sum), so a change to either rebuilds the image.

debimage_uptodate() {
	sum=$(cat "$1" "$2" | sha256sum | cut -d' ' -f1)
	if [ "${FORCE:-0}" != 1 ]; then
		have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL_KEY\"}}" "$TAG" 2>/dev/null || true)
		if [ "$have" = "$sum" ]; then
			echo "$KIND image $TAG is up to date (scripts' sha256 $sum)"
			exit 0
		fi
	fi
}

debimage_preflight() {
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
}

# debimage_cleanup unmounts anything still mounted under the rootfs before
# deleting it, or rm would descend into the host's /proc.
debimage_cleanup() {
	for m in proc dev/pts dev sys; do
		umount "$root/$m" 2>/dev/null || true
	done
	rm -rf "$root"
}

debimage_rootfs() {
	root=$(mktemp -d "/tmp/mageflow-$KIND-rootfs.XXXXXX")
	trap debimage_cleanup EXIT INT TERM
	echo "==> debootstrap bookworm into $root"
	debootstrap --variant=minbase bookworm "$root" "$MIRROR"
	cat >"$root/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
SRC
	# Never keep downloaded .debs or install docs/recommends: lean images.
	cat >"$root/etc/apt/apt.conf.d/90mageflow" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Options { "--force-confold"; };
CONF
	cat >"$root/etc/dpkg/dpkg.cfg.d/90mageflow-nodoc" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CONF
}

debimage_install() {
	# Packages must not start services inside the chroot.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mount -t proc proc "$root/proc"
	echo "==> apt-get install $1"
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
		sh -euc "apt-get update -q && apt-get -y -q upgrade && apt-get install -y -q $1 && apt-get clean"
	umount "$root/proc"
	rm -f "$root/usr/sbin/policy-rc.d"
	# Drop caches and logs that only describe this build.
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
		"$root"/var/log/* "$root"/tmp/* "$root"/root/.npm "$root"/root/.cache
}
