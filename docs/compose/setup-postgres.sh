#!/bin/sh
# The temporal-schema one-shot of docker-compose.yml (in the temporal image):
# creates Temporal's two databases and applies every schema step not applied
# yet, from the schema embedded in temporal-sql-tool (the server's own
# version, v1.29.1). Safe to run again: an existing database is kept,
# setup-schema -v 0.0 and update-schema are no-ops when current.
set -eu
export SQL_PLUGIN=postgres12 SQL_HOST="${POSTGRES_SEEDS:-postgresql}" SQL_PORT=5432
export SQL_USER="${POSTGRES_USER:-temporal}" SQL_PASSWORD="${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
for db in temporal temporal_visibility; do
	name=temporal
	[ "$db" = temporal_visibility ] && name=visibility
	export SQL_DATABASE=$db
	temporal-sql-tool create-database 2>&1 | grep -v 'already exists' || true
	temporal-sql-tool setup-schema -v 0.0
	temporal-sql-tool update-schema --schema-name "postgresql/v12/$name"
done
echo "schema of temporal and temporal_visibility up to date"
