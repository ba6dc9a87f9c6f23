#!/bin/sh
# Runs once, when the official PostgreSQL entrypoint initialises an empty data
# directory. The passwords come from the container's environment (Pulumi secrets)
# and are read by psql's \getenv, so they are never part of this file, of a command
# line or of the server log.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv warehouse_password WAREHOUSE_DB_PASSWORD
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE warehouse LOGIN PASSWORD :'warehouse_password';
CREATE DATABASE warehouse OWNER warehouse;
-- By default every role may connect to every database. Each database here is for
-- its owner only: the pipelines' role cannot open Airflow's state, and neither can
-- open the maintenance database.
REVOKE CONNECT, TEMPORARY ON DATABASE airflow FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE warehouse FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC;
SQL
