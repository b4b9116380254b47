#!/bin/bash
# Run once by the influxdb image, right after its first-start setup (it runs the
# executable *.sh files of /docker-entrypoint-initdb.d with the new admin token active).
#
# Maps the InfluxQL database named like the bucket (retention policy autogen) to the
# bucket, so that Grafana's InfluxQL data source (deploy/grafana/provisioning) can query
# it through the 1.x-compatible /query API.
set -euo pipefail

influx v1 dbrp create \
    --org "${DOCKER_INFLUXDB_INIT_ORG}" \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
    --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
    --rp autogen \
    --default
