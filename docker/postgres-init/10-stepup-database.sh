#!/bin/sh
# The BFF's own role and database in the compose PostgreSQL, beside FusionAuth's. The postgres image runs the scripts
# in /docker-entrypoint-initdb.d once, when it initialises an empty data directory (like kickstart, it is not re-run:
# after changing the names or the password, start over with `docker compose down -v`).
# psql's :"name" and :'value' quote an identifier and a literal, so the password needs no escaping here.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v name="$BFF_DATABASE_USER" -v password="$BFF_DATABASE_PASSWORD" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
SQL
