#!/usr/bin/env bash
# Creates the platform's own database and its login role next to Temporal's databases.
#
# The postgres image runs the scripts in /docker-entrypoint-initdb.d once, on the first start
# of an empty data volume, as the superuser (POSTGRES_USER, here Temporal's). Changing the
# ONBOARDING_DB_* variables later has no effect on an existing volume: alter the role by hand.
#
# The values go through psql variables (:"ident" / :'literal'), so psql quotes them and a
# password holding quotes or backslashes cannot break, or inject into, the SQL.
# No `set -u` and no `exit`: when the file is not executable the entrypoint sources it.
set -e

: "${ONBOARDING_DB_NAME:?ONBOARDING_DB_NAME is not set}"
: "${ONBOARDING_DB_USER:?ONBOARDING_DB_USER is not set}"
: "${ONBOARDING_DB_PASSWORD:?ONBOARDING_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
    --set=app_db="$ONBOARDING_DB_NAME" \
    --set=app_user="$ONBOARDING_DB_USER" \
    --set=app_password="$ONBOARDING_DB_PASSWORD" <<'EOSQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';
CREATE DATABASE :"app_db" OWNER :"app_user";
-- Only its owner (and superusers) may connect to the platform's database.
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
EOSQL
