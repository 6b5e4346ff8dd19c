#!/bin/sh
# postgresql-image.sh [TAG] — the PostgreSQL 15 image docker-compose.yml runs,
# from Debian packages alone (debootstrap + apt + docker import, like the
# builder and instance images: no registry is pulled from). `make
# cluster-images` calls it.
#
# Its entrypoint, /usr/local/bin/mageflow-postgres, runs initdb into
# $PGDATA (the compose volume) on the first start, with the superuser
# $POSTGRES_USER (default temporal) and the password from
# $POSTGRES_PASSWORD_FILE or $POSTGRES_PASSWORD (never baked in), opens
# scram-sha-256 logins from the network, and runs postgres as the postgres
# user.
#
# Idempotent: the image carries the sha256 of this script and rootfs.sh;
# nothing is done when they are unchanged (FORCE=1 rebuilds). Needs root.
set -eu

TAG="${1:-mageflow/postgresql:15-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
LABEL_KEY="org.mageflow.postgresql.script-sha256"
PACKAGES="postgresql-15"

script_dir=$(cd "$(dirname "$0")" && pwd)
lib="$script_dir/../../internal/platform/debimage/rootfs.sh"
KIND=postgresql
# shellcheck source=../../internal/platform/debimage/rootfs.sh
. "$lib"
debimage_uptodate "$script_dir/postgresql-image.sh" "$lib"
debimage_preflight
start=$(date +%s)
debimage_rootfs
# No default cluster: the entrypoint creates one in the volume.
mkdir -p "$root/etc/postgresql-common"
echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
debimage_install "$PACKAGES"

mkdir -p "$root/var/lib/postgresql/data" "$root/run/postgresql"
chroot "$root" chown postgres:postgres /var/lib/postgresql/data /run/postgresql
chmod 700 "$root/var/lib/postgresql/data"

cat >"$root/usr/local/bin/mageflow-postgres" <<'ENTRY'
#!/bin/sh
# The PostgreSQL container's main process: initdb on the first start, then
# postgres (as the postgres user) listening on every interface.
set -eu
bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
role=${POSTGRES_USER:-temporal}
pw=${POSTGRES_PASSWORD:-}
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
	pw=$(cat "$POSTGRES_PASSWORD_FILE")
fi
asuser() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "$data" /run/postgresql
chown postgres:postgres "$data" /run/postgresql
chmod 700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
	if [ -z "$pw" ]; then
		echo "mageflow-postgres: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE for the first start" >&2
		exit 1
	fi
	tmp=$(mktemp -d)
	printf '%s\n' "$pw" >"$tmp/pw"
	chown -R postgres:postgres "$tmp"
	chmod 700 "$tmp"
	asuser "$bin/initdb" -D "$data" -U "$role" --pwfile="$tmp/pw" --auth=scram-sha-256 -E UTF8 --locale=C
	rm -rf "$tmp"
	echo "host all all all scram-sha-256" >>"$data/pg_hba.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$data" \
	-c listen_addresses='*' -c max_connections=250 -c unix_socket_directories=/run/postgresql "$@"
ENTRY
chmod 755 "$root/usr/local/bin/mageflow-postgres"

echo "==> docker import $TAG"
tar --numeric-owner -C "$root" -c . | docker import \
	--change "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	--change "ENV LANG=C.UTF-8" \
	--change "ENV PGDATA=/var/lib/postgresql/data" \
	--change "EXPOSE 5432" \
	--change "VOLUME /var/lib/postgresql/data" \
	--change "CMD [\"/usr/local/bin/mageflow-postgres\"]" \
	--change "LABEL $LABEL_KEY=$sum" \
	--change "LABEL org.opencontainers.image.title=mageflow-postgresql" \
	--change "LABEL org.opencontainers.image.base.name=debian:bookworm" \
	- "$TAG"

end=$(date +%s)
size=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "built $TAG in $((end - start))s, size $((size / 1024 / 1024)) MiB"
