#!/bin/sh
# scratch-image.sh — the FROM scratch images of docker-compose.yml, from
# static Go binaries (CGO_ENABLED=0 go install, see the Makefile's
# cluster-images) and a static busybox from Debian's busybox-static package
# (a shell for the one-shot scripts and wget/pgrep for healthchecks). No
# base image is pulled. `make cluster-images` and `make image` call it:
#
#   scratch-image.sh busybox OUT                      static busybox to OUT
#   scratch-image.sh temporal TAG SERVER SQL_TOOL CLI temporal-server v1.29.1,
#                                                     temporal-sql-tool, the
#                                                     temporal CLI, server
#                                                     config, setup and
#                                                     bootstrap scripts
#   scratch-image.sh ui TAG UI_SERVER                 the Web UI server
#
# Idempotent: the image carries the sha256 of everything copied into it
# and of this script; nothing is built when that is unchanged (FORCE=1
# rebuilds). Secrets are not in the images: the compose file passes them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
WORK="${WORK:-$repo/var/compose-images}"
LABEL_KEY="org.mageflow.compose.sha256"
# What the images' /bin offers through busybox.
APPLETS="sh cat grep sleep wget hostname pgrep"

die() { echo "scratch-image.sh: $*" >&2; exit 1; }

# busybox OUT: Debian's static busybox, downloaded once with apt.
fetch_busybox() {
	out=$1
	[ -x "$out" ] && return 0
	tmp=$(mktemp -d)
	(cd "$tmp" && { apt-get download -q busybox-static 2>/dev/null || { apt-get update -qq && apt-get download -q busybox-static; }; }) ||
		die "apt-get download busybox-static failed"
	dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
	mkdir -p "$(dirname "$out")"
	cp "$tmp/x/bin/busybox" "$out.tmp" && mv "$out.tmp" "$out"
	rm -rf "$tmp"
}

# stage NAME: a fresh context dir with /bin/busybox and its applets.
stage() {
	ctx="$WORK/$1"
	rm -rf "$ctx"
	mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp"
	fetch_busybox "$WORK/busybox"
	cp "$WORK/busybox" "$ctx/rootfs/bin/busybox"
	for a in $APPLETS; do ln -s busybox "$ctx/rootfs/bin/$a"; done
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/"
	chmod 1777 "$ctx/rootfs/tmp"
}

# build TAG: docker build of the staged context unless TAG carries its sum.
build() {
	tag=$1
	sum=$( (cat "$here/scratch-image.sh"; cd "$ctx" && find . -type f -o -type l | LC_ALL=C sort | while read -r f; do
		echo "$f"; [ -L "$f" ] && readlink "$f" || cat "$f"; done) | sha256sum | cut -d' ' -f1)
	have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL_KEY\"}}" "$tag" 2>/dev/null || true)
	if [ "${FORCE:-0}" != 1 ] && [ "$have" = "$sum" ]; then
		echo "image $tag is up to date (sha256 $sum)"
		return 0
	fi
	start=$(date +%s)
	docker build -q --label "$LABEL_KEY=$sum" -t "$tag" "$ctx" >/dev/null
	size=$(docker image inspect -f '{{.Size}}' "$tag")
	echo "built $tag in $(($(date +%s) - start))s, size $((size / 1024 / 1024)) MiB"
}

# scratch_build TAG PORT CMD: the image of $ctx/rootfs alone, run as an
# unprivileged user, exposing PORT and running CMD (a JSON array).
scratch_build() {
	cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/bin USER=temporal HOME=/tmp
USER 65532:65532
EXPOSE $2
CMD $3
EOF
	build "$1"
}

temporal() {
	[ $# = 4 ] || die "usage: temporal TAG SERVER SQL_TOOL CLI"
	stage temporal
	r="$ctx/rootfs"
	mkdir -p "$r/usr/local/bin" "$r/etc/temporal/config"
	cp "$2" "$r/usr/local/bin/temporal-server"
	cp "$3" "$r/usr/local/bin/temporal-sql-tool"
	cp "$4" "$r/usr/local/bin/temporal"
	cp "$here/temporal.yaml" "$r/etc/temporal/config/docker.yaml"
	cp "$here/dynamicconfig.yaml" "$r/etc/temporal/config/dynamicconfig.yaml"
	cp "$here/setup-postgres.sh" "$here/bootstrap.sh" "$r/usr/local/bin/"
	chmod 755 "$r/usr/local/bin/"*
	scratch_build "$1" 7233 '["temporal-server", "--root", "/etc/temporal", "--config", "config", "--env", "docker", "--allow-no-auth", "start"]'
}

ui() {
	[ $# = 2 ] || die "usage: ui TAG UI_SERVER"
	stage ui
	r="$ctx/rootfs"
	mkdir -p "$r/usr/local/bin" "$r/etc/temporal-ui/config"
	cp "$2" "$r/usr/local/bin/temporal-ui-server"
	cp "$here/ui.yaml" "$r/etc/temporal-ui/config/docker.yaml"
	scratch_build "$1" 8080 '["temporal-ui-server", "--root", "/etc/temporal-ui", "--config", "config", "--env", "docker", "start"]'
}

cmd=${1:-}
[ -n "$cmd" ] || die "usage: scratch-image.sh busybox OUT | temporal TAG SERVER SQL_TOOL CLI | ui TAG UI_SERVER"
shift
case $cmd in
busybox) [ $# = 1 ] || die "usage: busybox OUT"; fetch_busybox "$1" ;;
temporal) temporal "$@" ;;
ui) ui "$@" ;;
*) die "unknown image $cmd" ;;
esac
