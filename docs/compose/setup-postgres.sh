#!/bin/sh
# Creates and migrates Temporal's schemas in PostgreSQL. Safe to run again:
# create-database tolerates an existing database and update-schema is a no-op
# when the schema is current.
set -eu
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12
for db in temporal temporal_visibility; do
  dir=$SCHEMA_DIR/temporal/versioned
  [ "$db" = temporal_visibility ] && dir=$SCHEMA_DIR/visibility/versioned
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$DB_PORT" --pw "$POSTGRES_PWD" --db "$db" create-database || true
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$DB_PORT" --pw "$POSTGRES_PWD" --db "$db" setup-schema -v 0.0 || true
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$DB_PORT" --pw "$POSTGRES_PWD" --db "$db" update-schema -d "$dir"
done
