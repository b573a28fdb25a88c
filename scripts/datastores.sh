#!/usr/bin/env bash
# Installs the database servers and backup tools the datastore runners call (MariaDB 10.11 with
# mariabackup/mbstream, PostgreSQL 15), when missing. Starts no service. Safe to run again and again.
source "$(dirname "$0")/lib.sh"

apt_ensure mariadb-server-core mariadb-client mariadb-backup postgresql
