#!/bin/sh
# The temporal-bootstrap one-shot of docker-compose.yml (in the temporal
# image): the mageflow namespace and mageflow's search attributes
# (internal/platform/searchattr lists the same set). Idempotent.
set -eu
NS=${TEMPORAL_NAMESPACE:-mageflow}
temporal operator namespace describe -n "$NS" >/dev/null 2>&1 ||
	temporal operator namespace create -n "$NS" --retention 168h
for sa in App:Keyword Environment:Keyword Branch:Keyword CommitID:Keyword ReleaseID:Keyword BuildNumber:Int; do
	name=${sa%%:*}
	type=${sa#*:}
	# A namespace just created can take a moment to answer.
	i=0
	until list=$(temporal operator search-attribute list -n "$NS" 2>&1); do
		i=$((i + 1))
		[ $i -lt 30 ] || { echo "$list" >&2; exit 1; }
		sleep 1
	done
	echo "$list" | grep -qw "$name" ||
		temporal operator search-attribute create -n "$NS" --name "$name" --type "$type"
done
echo "namespace $NS and its search attributes ready"
