#!/bin/sh
# Creates the mageflow namespace and registers mageflow's search attributes
# (internal/platform/searchattr lists the same set). Idempotent.
set -eu
NS=${TEMPORAL_NAMESPACE:-mageflow}
temporal operator namespace describe -n "$NS" >/dev/null 2>&1 || temporal operator namespace create -n "$NS" --retention 30d
for sa in App:Keyword Environment:Keyword Branch:Keyword CommitID:Keyword ReleaseID:Keyword BuildNumber:Int; do
  name=${sa%%:*}; type=${sa#*:}
  temporal operator search-attribute list -n "$NS" | grep -qw "$name" || temporal operator search-attribute create -n "$NS" --name "$name" --type "$type"
done
