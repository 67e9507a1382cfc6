#!/bin/sh
# Start one node of the dispatcher's Redis: a data node (primary or replica) or
# a sentinel. Used by compose.yaml and k8s/ alike, with the redis image's
# redis-server (also as `--sentinel`) and redis-cli.
#
#   redis-start.sh data|sentinel
#
# Environment:
#   SELF                      this node's host name as the others reach it
#   REDIS_INITIAL_PRIMARY     "host port" of the data node that is primary when
#                             nothing else is known
#   REDIS_PORT, SENTINEL_PORT this node's port (6379, 26379)
#   REDIS_SENTINELS           "host:port host:port ..." (asked who the primary is now)
#   DISPATCHER_REDIS_PASSWORD, DISPATCHER_REDIS_SENTINEL_PASSWORD
#   REDIS_CONF_DIR            where redis.conf, redis-replica.conf, sentinel.conf are
#   REDIS_DATA_DIR            writable: the AOF, sentinel's own config (default /data)
#
# A data node asks the sentinels for the current primary first, so a restarted
# old primary comes back as a replica instead of a second primary; with no
# sentinel answering (first start) the initial primary is the primary.
set -eu

conf=${REDIS_CONF_DIR:-/etc/redis}
data=${REDIS_DATA_DIR:-/data}
master=campaigns

current_primary() {
    for sentinel in ${REDIS_SENTINELS:-}; do
        if answer=$(REDISCLI_AUTH="${DISPATCHER_REDIS_SENTINEL_PASSWORD:-}" redis-cli \
            -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
            sentinel get-master-addr-by-name "$master" 2>/dev/null) &&
            host=$(echo "$answer" | sed -n 1p) && port=$(echo "$answer" | sed -n 2p) &&
            [ -n "$host" ] && [ "$host" = "${host#* }" ] &&
            [ "$port" -gt 0 ] 2>/dev/null; then
            echo "$host $port"
            return
        fi
    done
    echo "$REDIS_INITIAL_PRIMARY"
}

port=${REDIS_PORT:-6379}
case "${1:-}" in
data)
    primary=$(current_primary)
    set -- redis-server "$conf/redis.conf" --bind 0.0.0.0 --port "$port" --dir "$data" \
        --requirepass "$DISPATCHER_REDIS_PASSWORD" \
        --masterauth "$DISPATCHER_REDIS_PASSWORD" \
        --replica-announce-ip "$SELF"
    if [ "$primary" != "$SELF $port" ]; then
        # shellcheck disable=SC2086 # "host port": two words
        set -- "$@" --include "$conf/redis-replica.conf" --replicaof $primary
    fi
    exec "$@"
    ;;
sentinel)
    if [ ! -f "$data/sentinel.conf" ]; then
        primary=$(current_primary)
        sed "/^sentinel monitor /s/__PRIMARY__/$primary/" "$conf/sentinel.conf" >"$data/sentinel.conf"
    fi
    exec redis-server "$data/sentinel.conf" --sentinel --port "${SENTINEL_PORT:-26379}" --dir "$data" \
        --requirepass "$DISPATCHER_REDIS_SENTINEL_PASSWORD" \
        --sentinel auth-pass "$master" "$DISPATCHER_REDIS_PASSWORD" \
        --sentinel announce-ip "$SELF"
    ;;
*)
    echo "usage: redis-start.sh data|sentinel" >&2
    exit 2
    ;;
esac
