#!/bin/bash
# Backups of the platform's PostgreSQL: one directory per backup under $BACKUPS_DIR,
# named by its UTC time, holding a pg_dump (custom format) of each database and, written
# last, manifest.json with each file's size and sha256. A directory without a manifest
# is incomplete and never restored from.
#
#   postgres-backup loop          take a backup whenever the newest is $EVERY_SECONDS old,
#                                 remove those older than $KEEP_SECONDS (docker target)
#   postgres-backup now           take one backup and remove the expired ones (CronJob)
#   postgres-backup list          the complete backups, oldest first
#   postgres-backup verify NAME   check a backup is complete and intact
#   postgres-backup restore NAME  verify, then replace each database with its dump
#
# It runs in the PostgreSQL image itself, so pg_dump and pg_restore are always the
# server's own major version. Connection: PGHOST, PGUSER, PGPASSWORD (the superuser).
set -euo pipefail

: "${BACKUPS_DIR:?}" "${DATABASES:?}"
# Dumps hold the warehouse and Airflow's connections: readable by the owner and its
# group (the scheduler checks the newest backup's age, read-only), nobody else.
umask 027

log() { printf '%s postgres-backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# Backups named by time sort oldest first; only complete ones.
complete_backups() {
    local dir
    for dir in "$BACKUPS_DIR"/[0-9]*Z; do
        [[ -f $dir/manifest.json ]] && basename "$dir"
    done
    return 0
}

# A backup's name (20261202T093000Z) as the time it was taken (2026-12-02T09:30:00Z).
taken_at() {
    local name=$1
    echo "${name:0:4}-${name:4:2}-${name:6:2}T${name:9:2}:${name:11:2}:${name:13:2}Z"
}

age_seconds() {
    echo $(($(date -u +%s) - $(date -u -d "$(taken_at "$1")" +%s)))
}

take() {
    local name work db file first=1
    name=$(date -u +%Y%m%dT%H%M%SZ)
    work="$BACKUPS_DIR/.incomplete-$name"
    rm -rf "$work"
    mkdir -p "$work"
    for db in $DATABASES; do
        pg_dump --format=custom --dbname="$db" --file="$work/$db.dump"
    done
    {
        printf '{"taken_at": "%s", "files": {' "$(taken_at "$name")"
        for db in $DATABASES; do
            file="$db.dump"
            ((first)) || printf ', '
            first=0
            printf '"%s": {"bytes": %s, "sha256": "%s"}' "$file" \
                "$(stat -c %s "$work/$file")" "$(sha256sum "$work/$file" | cut -d' ' -f1)"
        done
        printf '}}\n'
    } >"$work/manifest.json"
    mv "$work" "$BACKUPS_DIR/$name"
    log "took backup $name ($(du -sh "$BACKUPS_DIR/$name" | cut -f1))"
}

expire() {
    local name newest
    newest=$(complete_backups | tail -n 1)
    for name in $(complete_backups); do
        # The newest backup stays, however old: it may be the only way back.
        if [[ $name != "$newest" ]] && (($(age_seconds "$name") > KEEP_SECONDS)); then
            rm -rf "${BACKUPS_DIR:?}/$name"
            log "removed backup $name, older than ${KEEP_SECONDS}s"
        fi
    done
    # What a crash mid-backup left behind.
    find "$BACKUPS_DIR" -maxdepth 1 -name '.incomplete-*' -mmin +60 -exec rm -rf {} +
}

verify() {
    local name=$1 dir="$BACKUPS_DIR/$1" db file expected actual
    if [[ ! -d $dir ]]; then
        echo "backup $name does not exist in $BACKUPS_DIR; the backups are: $(complete_backups | tr '\n' ' ')" >&2
        return 1
    fi
    if [[ ! -f $dir/manifest.json ]]; then
        echo "backup $name is incomplete: $dir/manifest.json is missing (the backup did not finish)" >&2
        return 1
    fi
    for db in $DATABASES; do
        file="$dir/$db.dump"
        expected=$(grep -o "\"$db.dump\": {[^}]*}" "$dir/manifest.json" | grep -o '[0-9a-f]\{64\}' || true)
        if [[ ! -f $file ]]; then
            echo "backup $name is missing $file" >&2
            return 1
        fi
        actual=$(sha256sum "$file" | cut -d' ' -f1)
        if [[ -z $expected || $expected != "$actual" ]]; then
            echo "backup $name is corrupt: $file does not match the sha256 in its manifest.json" >&2
            return 1
        fi
        if ! pg_restore --list "$file" >/dev/null; then
            echo "backup $name is corrupt: pg_restore cannot read $file" >&2
            return 1
        fi
    done
}

restore() {
    local name=$1 db
    verify "$name"
    for db in $DATABASES; do
        # The database is dropped (closing its connections) and created again from the
        # dump, with its owner and privileges: afterwards it holds exactly the backup.
        psql --dbname=postgres --quiet --set=ON_ERROR_STOP=1 \
            --command="DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
        pg_restore --create --exit-on-error --dbname=postgres "$BACKUPS_DIR/$name/$db.dump"
        log "restored database $db from backup $name"
    done
}

case "${1:-}" in
loop)
    : "${EVERY_SECONDS:?}" "${KEEP_SECONDS:?}"
    # Looks every minute, or more often when backups are due more often than every 4.
    poll=$((EVERY_SECONDS / 4 < 60 ? EVERY_SECONDS / 4 : 60))
    while true; do
        newest=$(complete_backups | tail -n 1)
        if [[ -z $newest ]] || (($(age_seconds "$newest") >= EVERY_SECONDS)); then
            # In a process of its own, so that any failing step stops that backup (a
            # function called before || would run on past errors); the loop retries.
            "$0" now || log "backup failed; retrying in a minute"
        fi
        sleep "$((poll > 0 ? poll : 1))"
    done
    ;;
now)
    : "${KEEP_SECONDS:?}"
    take
    expire
    ;;
list) complete_backups ;;
verify) verify "${2:?name a backup, see: postgres-backup list}" && echo "backup $2 is complete and intact" ;;
restore) restore "${2:?name a backup, see: postgres-backup list}" ;;
*)
    echo "usage: postgres-backup loop|now|list|verify NAME|restore NAME" >&2
    exit 2
    ;;
esac
