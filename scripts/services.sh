#!/usr/bin/env bash
# scripts/services.sh - private PostgreSQL + RabbitMQ for TxCoord runs.
#
# Normally SOURCED (by run.sh):
#
#     source scripts/services.sh
#     txc_services_start test      # or demo / bench
#     txc_services_trap            # stop everything on EXIT, INT (Ctrl-C), TERM
#
# It can also be EXECUTED, e.g. by crash tests that need to bounce a server, or by a
# human poking at a run:
#
#     scripts/services.sh start test | stop [mode] | status [mode] | env [mode]
#     scripts/services.sh pg-restart [fast|immediate]
#     scripts/services.sh rabbitmq-restart [graceful|kill]
#     scripts/services.sh rabbitmqctl list_queues        (any rabbitmqctl command)
#
# (executed commands other than `start` find the running services via TXCOORD_RUN_DIR,
# which run.sh exports, or via the mode argument.)
#
# What one mode gets (each mode has its own ports and run dir, so modes can run at once):
#
#     mode   PostgreSQL  PG "noprep"  AMQP   Erlang dist  run dir
#     test   20432       20433        20672  20682        /tmp/txcoord-test
#     demo   21432       21433        21672  21682        /tmp/txcoord-demo
#     bench  22432       22433        22672  22682        /tmp/txcoord-bench
#     crash  23432       23433        23672  23682        /tmp/txcoord-crash  (started by the crash tests)
#     slowack 24432      24433        24672  24682        /tmp/txcoord-slowack (crash tests: short consumer timeout)
#
# All of these lie below 32768, outside Linux's default ephemeral range (32768-60999): a
# listening port inside that range can be taken at any moment as the source port of some
# outgoing connection (the tests open thousands), and then PostgreSQL or RabbitMQ fails to
# bind it when it (re)starts. 25672 is avoided too: it is a stock RabbitMQ node's dist port.
#
# The run dir (override: TXCOORD_RUN_DIR) lives under /tmp because the repository may
# be cloned into a 0700 home directory that the postgres/rabbitmq users cannot enter.
# It is wiped at every start: each run begins from empty databases and an empty broker.
#
# After txc_services_start these are exported:
#     TXCOORD_MODE, TXCOORD_RUN_DIR, TXCOORD_SERVICES_SCRIPT
#     TXCOORD_PG              Host=127.0.0.1;Port=20432;Username=postgres   (no Database=)
#     TXCOORD_PG_NOPREPARED   Host=127.0.0.1;Port=20433;Username=postgres   (max_prepared_transactions=0)
#     TXCOORD_RABBITMQ        amqp://guest:guest@127.0.0.1:20672/
#     TXCOORD_RABBITMQ_NODE   txcoord-test@localhost
#
# Everything listens on 127.0.0.1 only. PostgreSQL uses `trust` auth: acceptable for a
# throw-away loopback-only test server, never for anything else.
#
# As root, PostgreSQL runs as `postgres` (it refuses to run as root) and RabbitMQ as
# `rabbitmq` (Erlang cookie in that user's home, so the stock `rabbitmqctl -n NODE ...`
# wrapper also works for humans). As a non-root user both run as that user.

# This file is sourced into callers that use `set -euo pipefail`; the functions are
# written to be correct under errexit/nounset. When executed, the same options apply.

TXC_SERVICES_SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

# Commands (function names) the caller wants run on exit BEFORE services stop, e.g.
# run.sh demo stops the coordinator/participant processes there. Run in reverse order.
TXC_CLEANUP_HOOKS=()

# Seconds to wait for each server to come up.
TXC_PG_START_TIMEOUT="${TXCOORD_PG_START_TIMEOUT:-60}"
TXC_RABBITMQ_START_TIMEOUT="${TXCOORD_RABBITMQ_START_TIMEOUT:-120}"

# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------

_txc_log() { printf '[services] %s\n' "$*"; }
_txc_err() { printf '[services] ERROR: %s\n' "$*" >&2; }

# Microseconds since the epoch (bash 5 EPOCHREALTIME; the separator is locale-dependent).
_txc_now_us() { local t="${EPOCHREALTIME/[.,]/}"; printf '%s' "$t"; }

# "3.1 s" since a _txc_now_us timestamp.
_txc_since() {
    local tenths=$(( ($(_txc_now_us) - $1) / 100000 ))
    printf '%d.%d s' $((tenths / 10)) $((tenths % 10))
}

# Run a command as a service user when we are root (postgres refuses to run as root; the
# rabbitmq node must own its files), or as ourselves otherwise. From `/`: the caller's
# cwd may be a 0700 directory the service user cannot enter (all our paths are absolute).
_txc_as() {
    local user="$1"; shift
    if (( EUID == 0 )); then
        (cd / && runuser -u "$user" -- "$@")
    else
        "$@"
    fi
}

_txc_chown() {
    local user="$1"; shift
    if (( EUID == 0 )); then chown -R "$user:" "$@"; fi
}

# True when something accepts TCP connections on 127.0.0.1:PORT. Plain bash, so it works
# where ss/netstat are missing; `timeout` guards against a black-holed connect.
_txc_port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Print the last lines of each existing log file given, for failure messages.
_txc_tail_logs() {
    local f
    for f in "$@"; do
        [[ -s "$f" ]] || continue
        printf '%s\n' "----- last 40 lines of $f -----" >&2
        tail -n 40 "$f" >&2 || true
        printf '%s\n' "-----" >&2
    done
}

_txc_mode_ports() {
    case "$1" in
        test)  echo "20432 20433 20672 20682" ;;
        demo)  echo "21432 21433 21672 21682" ;;
        bench) echo "22432 22433 22672 22682" ;;
        # The crash tests' own set (Tests/TxCoord.Tests.Crash): they restart these servers.
        crash) echo "23432 23433 23672 23682" ;;
        # The crash tests' set with a short RabbitMQ consumer timeout (ConsumerTimeoutTests).
        slowack) echo "24432 24433 24672 24682" ;;
        # Private sets for developers working side by side (scripts/services.sh start dev1).
        dev1)  echo "26432 26433 26672 26682" ;;
        dev2)  echo "27432 27433 27672 27682" ;;
        dev3)  echo "28432 28433 28672 28682" ;;
        dev4)  echo "29432 29433 29672 29682" ;;
        *)     return 1 ;;
    esac
}

# ---------------------------------------------------------------------------------------
# configuration: derive every name/port/path for a mode (no side effects)
# ---------------------------------------------------------------------------------------

_txc_configure() {
    local mode="$1" ports
    if ! ports="$(_txc_mode_ports "$mode")"; then
        _txc_err "unknown mode '$mode' (expected test, demo, bench, crash, slowack or dev1..dev4)"
        return 2
    fi
    read -r TXC_PG_PORT TXC_PG_NOPREP_PORT TXC_AMQP_PORT TXC_DIST_PORT <<<"$ports"
    # RabbitMQ's TLS listener: one below the plain one (23671 for crash, ...).
    TXC_AMQPS_PORT=$((TXC_AMQP_PORT - 1))
    # TLS on the servers only for the crash tests' set (LeastPrivilegeTests) and the developers'
    # sets: with ssl = on, Npgsql's default (SSL Mode=Prefer) would encrypt every connection of
    # the suite and the benchmark, and change what they measure.
    case "$mode" in crash|dev*) TXC_TLS=1 ;; *) TXC_TLS=0 ;; esac

    # An inherited TXCOORD_RUN_DIR that belongs to ANOTHER mode (exported by an outer
    # run.sh) must not be reused, or the two modes would wipe each other's state.
    local run_dir="${TXCOORD_RUN_DIR:-}"
    if [[ -n "$run_dir" && -n "${TXCOORD_MODE:-}" && "${TXCOORD_MODE}" != "$mode" ]]; then
        run_dir=""
    fi
    TXC_MODE="$mode"
    TXC_RUN_DIR="${run_dir:-/tmp/txcoord-$mode}"
    TXC_PG_DIR="$TXC_RUN_DIR/pg"
    TXC_PG_NOPREP_DIR="$TXC_RUN_DIR/pg-noprep"
    TXC_RMQ_DIR="$TXC_RUN_DIR/rabbitmq"
    TXC_TLS_DIR="$TXC_RUN_DIR/tls"

    # Erlang short node names need a host part that resolves; `localhost` normally does.
    local host="localhost"
    if ! getent hosts localhost >/dev/null 2>&1; then
        host="$(hostname -s)"
    fi
    TXC_RMQ_NODE="txcoord-$mode@$host"
}

# Locate PostgreSQL server binaries (Debian keeps them off PATH, per major version).
_txc_find_pg_bin() {
    if [[ -n "${TXCOORD_PG_BIN:-}" ]]; then
        TXC_PG_BIN="$TXCOORD_PG_BIN"
    else
        TXC_PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
        if [[ -z "$TXC_PG_BIN" ]] && command -v pg_config >/dev/null 2>&1; then
            TXC_PG_BIN="$(pg_config --bindir)"
        fi
    fi
    [[ -n "$TXC_PG_BIN" && -x "$TXC_PG_BIN/initdb" && -x "$TXC_PG_BIN/pg_ctl" ]]
}

# Locate RabbitMQ's real scripts. /usr/sbin/rabbitmq-server on Debian is a wrapper that
# `su`s to rabbitmq and forces its own log files; we call the real scripts directly.
_txc_find_rabbitmq_bin() {
    if [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
        TXC_RMQ_BIN=/usr/lib/rabbitmq/bin
    elif command -v rabbitmq-server >/dev/null 2>&1; then
        TXC_RMQ_BIN="$(dirname "$(readlink -f "$(command -v rabbitmq-server)")")"
    else
        return 1
    fi
}

# apt-get install with the lock wait that a CI machine (unattended-upgrades) or a
# concurrent install needs; output goes to a log that is shown on failure.
_txc_apt_install() {
    local log=/tmp/txcoord-apt-install.log
    if (( EUID != 0 )); then
        _txc_err "$* not installed and we are not root: install it with: sudo apt-get install -y $*"
        return 1
    fi
    _txc_log "installing $* from Debian packages (apt-get update + install; log: $log) ..."
    local t0; t0="$(_txc_now_us)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update \
           && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
                install -y --no-install-recommends "$@"; } >"$log" 2>&1; then
        _txc_err "apt-get install $* failed"
        _txc_tail_logs "$log"
        return 1
    fi
    _txc_log "installed $* in $(_txc_since "$t0")"
}

# The protocol model checks (Coordinator/models, run by the unit tests) need spin and a C
# compiler. Installs what is missing; never fails the caller: when it cannot install, it
# says so and the model tests fail with the same message.
txc_ensure_model_checker() {
    local missing=()
    command -v spin >/dev/null 2>&1 || missing+=(spin)
    command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    (( ${#missing[@]} == 0 )) && return 0
    _txc_apt_install "${missing[@]}" \
        || _txc_err "the protocol model tests will fail: ${missing[*]} missing (apt-get install -y ${missing[*]})"
    return 0
}

_txc_ensure_binaries() {
    if ! _txc_find_pg_bin; then
        # Not expected on the dev/CI image (PostgreSQL 15 is there), but cheap to handle.
        _txc_apt_install postgresql || return 1
        _txc_find_pg_bin || { _txc_err "PostgreSQL server binaries not found (set TXCOORD_PG_BIN)"; return 1; }
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1 && ! _txc_find_rabbitmq_bin; then
        # The Debian package may also start its own default node (rabbit@host, port 5672)
        # where systemd runs; that node has a different name and ports, so no conflict.
        _txc_apt_install rabbitmq-server || return 1
    fi
    _txc_find_rabbitmq_bin || { _txc_err "rabbitmq-server installed but its scripts were not found"; return 1; }
    if (( EUID == 0 )); then
        getent passwd postgres >/dev/null || { _txc_err "no 'postgres' user (needed to run PostgreSQL as root)"; return 1; }
        getent passwd rabbitmq >/dev/null || { _txc_err "no 'rabbitmq' user (the rabbitmq-server package creates it)"; return 1; }
    fi
}

# ---------------------------------------------------------------------------------------
# state file: lets a separate process (a crash test, a second shell) find this run
# ---------------------------------------------------------------------------------------

_txc_write_state() {
    local f="$TXC_RUN_DIR/services.env" v
    {
        echo "# written by scripts/services.sh; source it to reach this run's services"
        for v in TXC_MODE TXC_RUN_DIR TXC_PG_PORT TXC_PG_NOPREP_PORT TXC_AMQP_PORT TXC_AMQPS_PORT TXC_DIST_PORT TXC_TLS_DIR TXC_TLS \
                 TXC_PG_DIR TXC_PG_NOPREP_DIR TXC_RMQ_DIR TXC_RMQ_NODE TXC_RMQ_HOME TXC_PG_BIN \
                 TXC_RMQ_BIN TXC_EPMD_OURS TXC_OWNER_PID; do
            printf '%s=%q\n' "$v" "${!v}"
        done
    } >"$f"
}

# Load the state of a running mode into this shell: by mode, or by TXCOORD_RUN_DIR.
txc_services_load() {
    local mode="${1:-${TXCOORD_MODE:-}}" dir
    if [[ -n "$mode" ]]; then
        _txc_configure "$mode" || return
        dir="$TXC_RUN_DIR"
    else
        dir="${TXCOORD_RUN_DIR:-}"
    fi
    if [[ -z "$dir" || ! -f "$dir/services.env" ]]; then
        _txc_err "no running services found (${dir:-give a mode or set TXCOORD_RUN_DIR}; missing services.env)"
        return 1
    fi
    # shellcheck disable=SC1091
    source "$dir/services.env"
    _txc_export
}

_txc_export() {
    export TXCOORD_MODE="$TXC_MODE"
    export TXCOORD_RUN_DIR="$TXC_RUN_DIR"
    export TXCOORD_SERVICES_SCRIPT="$TXC_SERVICES_SCRIPT_PATH"
    export TXCOORD_PG="Host=127.0.0.1;Port=$TXC_PG_PORT;Username=postgres"
    export TXCOORD_PG_NOPREPARED="Host=127.0.0.1;Port=$TXC_PG_NOPREP_PORT;Username=postgres"
    export TXCOORD_RABBITMQ="amqp://guest:guest@127.0.0.1:$TXC_AMQP_PORT/"
    export TXCOORD_RABBITMQ_NODE="$TXC_RMQ_NODE"
    # TLS (docs/tls.md): the run's own CA, PostgreSQL with ssl = on (plain connections still
    # accepted), RabbitMQ's TLS listener. The certificates name localhost and 127.0.0.1.
    if (( TXC_TLS )); then
        export TXCOORD_TLS_CA="$TXC_TLS_DIR/ca.pem"
        export TXCOORD_RABBITMQ_TLS="amqps://guest:guest@localhost:$TXC_AMQPS_PORT/"
    else
        unset TXCOORD_TLS_CA TXCOORD_RABBITMQ_TLS
    fi
}

# A private CA and a server certificate for localhost / 127.0.0.1 signed by it, with a copy
# of the key for each server's user (both refuse a key that others can read).
_txc_tls_certs() {
    local d="$TXC_TLS_DIR" user
    command -v openssl >/dev/null 2>&1 || _txc_apt_install openssl || return 1
    mkdir -p "$d" && chmod 755 "$d"
    {
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=TxCoord test CA ($TXC_MODE)" \
            -keyout "$d/ca.key" -out "$d/ca.pem" &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" &&
        printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n' >"$d/server.ext" &&
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
            -extfile "$d/server.ext" -out "$d/server.crt"
    } >"$d/openssl.log" 2>&1 || { _txc_err "could not make the TLS certificates"; _txc_tail_logs "$d/openssl.log"; return 1; }
    chmod 644 "$d/ca.pem" "$d/server.crt"
    for user in postgres rabbitmq; do
        cp "$d/server.key" "$d/server-$user.key"
        chmod 600 "$d/server-$user.key"
        _txc_chown "$user" "$d/server-$user.key"
    done
    rm -f "$d/ca.key" "$d/server.key" "$d/server.csr"
}

# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------

# _txc_pg_init DIR PORT MAX_PREPARED MAX_CONNECTIONS SHARED_BUFFERS
_txc_pg_init() {
    local dir="$1" port="$2" max_prepared="$3" max_conn="$4" shared_buffers="$5"
    mkdir -p "$dir"
    chmod 700 "$dir"
    _txc_chown postgres "$dir"
    # -N: don't fsync initdb's own output - a crash during initdb just means re-running.
    # The server itself runs with fsync=on (set below): the tests measure durability.
    if ! _txc_as postgres "$TXC_PG_BIN/initdb" -D "$dir/data" --auth=trust -U postgres \
            --locale=C --encoding=UTF8 -N >"$dir/initdb.log" 2>&1; then
        _txc_err "initdb failed for $dir/data"
        _txc_tail_logs "$dir/initdb.log"
        return 1
    fi
    # Unix sockets are not needed (clients use 127.0.0.1), but keep one in the private
    # dir for debugging unless the path would exceed the 107-byte sun_path limit.
    local sockdir="$dir"
    (( ${#dir} + 20 > 100 )) && sockdir=""
    cat >>"$dir/data/postgresql.conf" <<EOF

# ---- added by scripts/services.sh ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockdir'
max_prepared_transactions = $max_prepared
max_connections = $max_conn
shared_buffers = $shared_buffers
# Durability is what a 2PC coordinator is about: keep the defaults explicit.
fsync = on
synchronous_commit = on
full_page_writes = on
# pg_ctl -l sends the server's stderr to $dir/postgresql.log
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

# _txc_pg_start DIR PORT LABEL: start an initialised cluster and wait until it answers.
_txc_pg_start() {
    local dir="$1" port="$2" label="$3" t0
    t0="$(_txc_now_us)"
    _txc_log "starting PostgreSQL ($label) on 127.0.0.1:$port ..."
    # pg_ctl puts the postmaster in its own session, so Ctrl-C on our terminal does not
    # reach it: stopping is the trap's job (pg_ctl stop -m fast).
    if ! _txc_as postgres "$TXC_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" \
            -w -t "$TXC_PG_START_TIMEOUT" start >/dev/null 2>"$dir/pg_ctl.err"; then
        _txc_err "PostgreSQL ($label) did not start on 127.0.0.1:$port within ${TXC_PG_START_TIMEOUT}s"
        _txc_tail_logs "$dir/pg_ctl.err" "$dir/postgresql.log"
        return 1
    fi
    if ! "$TXC_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 10; then
        _txc_err "PostgreSQL ($label) started but pg_isready -h 127.0.0.1 -p $port fails"
        _txc_tail_logs "$dir/postgresql.log"
        return 1
    fi
    _txc_log "PostgreSQL ($label) ready in $(_txc_since "$t0")"
}

_txc_psql() {
    local port="$1"; shift
    # -X: ignore any ~/.psqlrc; ON_ERROR_STOP: fail loudly.
    "$TXC_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

_txc_pg_create_dbs() {
    local port="$1" db; shift
    for db in "$@"; do
        _txc_psql "$port" -c "CREATE DATABASE \"$db\"" || { _txc_err "could not create database $db on port $port"; return 1; }
    done
}

# PID of the postmaster serving DIR/data. Normally from postmaster.pid; if that is gone
# (run dir deleted under a running server) from the exact command line `postgres -D
# DIR/data` that pg_ctl gives it (backends' command lines don't have -D).
_txc_pg_pid() {
    local dir="$1" pid p args
    pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
        return 0
    fi
    for p in $(pgrep -x postgres 2>/dev/null || true); do
        args="$( { tr '\0' '\n' <"/proc/$p/cmdline"; } 2>/dev/null || true)"
        if grep -qx -- '-D' <<<"$args" && grep -qxF -- "$dir/data" <<<"$args"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Stop one cluster: fast (rolls back open transactions, keeps prepared ones), then
# immediate, then SIGKILL. Silent no-op when it is not running. Without a usable data
# dir (pg_ctl needs postmaster.pid) the same shutdown modes are sent as signals.
_txc_pg_stop_dir() {
    local dir="$1" how="${2:-fast}" pid i
    pid="$(_txc_pg_pid "$dir")" || return 0
    _txc_log "stopping PostgreSQL in $dir (-m $how) ..."
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        [[ "$how" == fast ]] && _txc_as postgres "$TXC_PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 20 stop >/dev/null 2>&1 && return 0
        _txc_as postgres "$TXC_PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 && return 0
    else
        # SIGINT = fast shutdown, SIGQUIT = immediate shutdown (see pg_ctl -m).
        [[ "$how" == fast ]] && kill -INT "$pid" 2>/dev/null
        for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
        kill -QUIT "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    fi
    kill -KILL "$pid" 2>/dev/null || true
}

# Restart cluster #1 (the one with the coordinator/bank databases) for crash tests.
#   fast      - clean shutdown (prepared transactions survive, open ones roll back)
#   immediate - like a crash: no checkpoint, WAL recovery on start
txc_pg_restart() {
    local how="${1:-fast}"
    [[ "$how" == fast || "$how" == immediate ]] || { _txc_err "txc_pg_restart: fast or immediate, not '$how'"; return 2; }
    [[ -n "${TXC_PG_DIR:-}" ]] || txc_services_load || return
    _txc_pg_stop_dir "$TXC_PG_DIR" "$how"
    _txc_pg_start "$TXC_PG_DIR" "$TXC_PG_PORT" "main"
}

# ---------------------------------------------------------------------------------------
# RabbitMQ
# ---------------------------------------------------------------------------------------

# HOME for the node and our CLI calls. As root: the rabbitmq user's home, whose Erlang
# cookie the Debian package creates and the stock `rabbitmqctl` wrapper also uses. If
# that is unusable, a private home (and cookie) in the run dir.
_txc_default_rmq_home() {
    local h
    if (( EUID == 0 )); then
        h="$(getent passwd rabbitmq | cut -d: -f6)"
        if [[ -n "$h" ]] && runuser -u rabbitmq -- test -w "$h" 2>/dev/null; then
            echo "$h"
        else
            echo "$TXC_RMQ_DIR/home"
        fi
    else
        echo "$HOME"
    fi
}

# The environment that gives our node its private identity. Shared by the server and
# by our CLI calls so both agree on node name, cookie (via HOME) and config.
_txc_rmq_env() {
    TXC_RMQ_ENV=(
        "HOME=${TXC_RMQ_HOME:-$(_txc_default_rmq_home)}"
        "RABBITMQ_NODENAME=$TXC_RMQ_NODE"
        "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
        "RABBITMQ_NODE_PORT=$TXC_AMQP_PORT"
        "RABBITMQ_DIST_PORT=$TXC_DIST_PORT"
        "RABBITMQ_MNESIA_BASE=$TXC_RMQ_DIR/mnesia"
        "RABBITMQ_LOG_BASE=$TXC_RMQ_DIR/log"
        "RABBITMQ_PID_FILE=$TXC_RMQ_DIR/rabbitmq.pid"
        "RABBITMQ_CONFIG_FILE=$TXC_RMQ_DIR/rabbitmq.conf"
        "RABBITMQ_ADVANCED_CONFIG_FILE=$TXC_RMQ_DIR/advanced.config"
        "RABBITMQ_ENABLED_PLUGINS_FILE=$TXC_RMQ_DIR/enabled_plugins"
        # Don't read /etc/rabbitmq/rabbitmq-env.conf: it could rename/move the node.
        "RABBITMQ_CONF_ENV_FILE=$TXC_RMQ_DIR/rabbitmq-env.conf"
        # Unbound schedulers: several nodes + PostgreSQL + dotnet share 2 cores here.
        "RABBITMQ_SCHEDULER_BIND_TYPE=u"
        # Erlang distribution (rabbitmqctl traffic) on loopback only, like AMQP.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
        # A crash dump of our node lands in the run dir, not in the caller's cwd.
        "ERL_CRASH_DUMP=$TXC_RMQ_DIR/erl_crash.dump"
    )
}

# Optional broker timeouts, read at `start` (positive integers, milliseconds):
#   TXCOORD_RABBITMQ_CONSUMER_TIMEOUT_MS  rabbitmq.conf consumer_timeout (default 30 min): a
#       delivery left unacknowledged longer closes its channel (PRECONDITION_FAILED) and is requeued
#   TXCOORD_RABBITMQ_CHANNEL_TICK_MS      the `rabbit` app's channel_tick_interval (advanced.config;
#       default 60000 in 3.10): how often a channel checks that timeout, so the real limit is
#       consumer_timeout + up to one tick
# Writes advanced.config ('[].' without a tick) and checks the values; rabbitmq.conf gets the
# consumer timeout in txc_services_start.
_txc_rmq_write_timeouts() {
    local v
    for v in TXCOORD_RABBITMQ_CONSUMER_TIMEOUT_MS TXCOORD_RABBITMQ_CHANNEL_TICK_MS; do
        if [[ -n "${!v:-}" && ! "${!v}" =~ ^[1-9][0-9]{0,9}$ ]]; then
            _txc_err "$v='${!v}' is not a positive number of milliseconds"
            return 2
        fi
    done
    if [[ -n "${TXCOORD_RABBITMQ_CHANNEL_TICK_MS:-}" ]]; then
        printf '[{rabbit, [{channel_tick_interval, %s}]}].\n' "$TXCOORD_RABBITMQ_CHANNEL_TICK_MS" >"$TXC_RMQ_DIR/advanced.config"
    else
        echo '[].' >"$TXC_RMQ_DIR/advanced.config"
    fi
}

# rabbitmqctl against our node, from any user/cwd. As root this runs as `rabbitmq` so it
# reads the same Erlang cookie as the node (root's own ~/.erlang.cookie would not match).
txc_rabbitmqctl() {
    [[ -n "${TXC_RMQ_NODE:-}" ]] || txc_services_load >/dev/null || return
    _txc_rmqctl 300 "$@"
}

# _txc_rmqctl TIMEOUT_SECONDS ARGS...: the CLI with a hard time limit (it can hang on a
# half-dead node).
_txc_rmqctl() {
    local secs="$1"; shift
    _txc_rmq_env
    _txc_as rabbitmq env "${TXC_RMQ_ENV[@]}" \
        timeout "$secs" "$TXC_RMQ_BIN/rabbitmqctl" -n "$TXC_RMQ_NODE" "$@"
}

# PIDs of beam.smp processes that belong to OUR node. RabbitMQ 3.x passes node name and
# directories to the VM through the environment, not the command line, so match the
# exact RABBITMQ_MNESIA_BASE=<our run dir> entry of /proc/PID/environ (unique per run
# dir); other nodes, including another mode's, never match.
_txc_rmq_pids() {
    local p
    for p in $(pgrep -x beam.smp 2>/dev/null || true); do
        if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null \
                | grep -qxF -- "RABBITMQ_MNESIA_BASE=$TXC_RMQ_DIR/mnesia"; then
            echo "$p"
        fi
    done
}

# Launch the node in the background (own session: Ctrl-C is for the trap) and wait.
_txc_rmq_launch() {
    _txc_rmq_env
    TXC_RMQ_T0="$(_txc_now_us)"
    _txc_log "starting RabbitMQ node $TXC_RMQ_NODE on 127.0.0.1:$TXC_AMQP_PORT (dist $TXC_DIST_PORT) ..."
    # cd: the rabbitmq user must be able to enter the cwd; the caller's may be 0700.
    ( cd "$TXC_RMQ_DIR" \
      && exec setsid "${TXC_RUNUSER_RMQ[@]}" env "${TXC_RMQ_ENV[@]}" "$TXC_RMQ_BIN/rabbitmq-server" ) \
        >>"$TXC_RMQ_DIR/console.log" 2>&1 </dev/null &
    echo $! >"$TXC_RMQ_DIR/launcher.pid"
}

_txc_rmq_wait() {
    local launcher deadline
    launcher="$(cat "$TXC_RMQ_DIR/launcher.pid")"
    deadline=$(( $(_txc_now_us) + TXC_RABBITMQ_START_TIMEOUT * 1000000 ))
    # Cheap poll first: the AMQP listener opens at the end of boot. Each rabbitmqctl
    # call starts an Erlang VM, so it is only used once, to confirm.
    until _txc_port_open "$TXC_AMQP_PORT"; do
        if ! kill -0 "$launcher" 2>/dev/null; then
            _txc_err "RabbitMQ node $TXC_RMQ_NODE exited during start-up"
            _txc_tail_logs "$TXC_RMQ_DIR/console.log" "$TXC_RMQ_DIR/log/$TXC_RMQ_NODE.log"
            return 1
        fi
        if (( $(_txc_now_us) > deadline )); then
            _txc_err "RabbitMQ node $TXC_RMQ_NODE not listening on 127.0.0.1:$TXC_AMQP_PORT after ${TXC_RABBITMQ_START_TIMEOUT}s"
            _txc_tail_logs "$TXC_RMQ_DIR/console.log" "$TXC_RMQ_DIR/log/$TXC_RMQ_NODE.log"
            return 1
        fi
        sleep 0.2
    done
    if ! _txc_rmqctl 90 -q await_startup --timeout 60 >"$TXC_RMQ_DIR/await_startup.log" 2>&1; then
        _txc_err "RabbitMQ port $TXC_AMQP_PORT is open but 'rabbitmqctl -n $TXC_RMQ_NODE await_startup' fails"
        _txc_tail_logs "$TXC_RMQ_DIR/await_startup.log" "$TXC_RMQ_DIR/log/$TXC_RMQ_NODE.log"
        return 1
    fi
    _txc_log "RabbitMQ ready in $(_txc_since "$TXC_RMQ_T0")"
}

# Stop our node: rabbitmqctl stop (graceful), then kill what is left of OUR node only.
#   graceful - rabbitmqctl stop, then TERM/KILL leftovers
#   kill     - SIGKILL straight away (simulates a broker crash)
_txc_rmq_stop() {
    local how="${1:-graceful}" pids p i
    pids="$(_txc_rmq_pids)"
    if [[ -n "$pids" ]]; then
        _txc_log "stopping RabbitMQ node $TXC_RMQ_NODE ($how) ..."
        if [[ "$how" == graceful ]]; then
            # With the pid file, `stop` returns only once the VM process has exited (without
            # it, `stop` would wait for the file to appear: run dir deleted under the node).
            local log="$TXC_RMQ_DIR/stop.log" pidfile=()
            [[ -d "$TXC_RMQ_DIR" ]] || log=/dev/null
            [[ -f "$TXC_RMQ_DIR/rabbitmq.pid" ]] && pidfile=("$TXC_RMQ_DIR/rabbitmq.pid")
            _txc_rmqctl 60 -q stop "${pidfile[@]}" >"$log" 2>&1 || true
            pids="$(_txc_rmq_pids)"
            for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
            for ((i = 0; i < 50; i++)); do
                [[ -z "$(_txc_rmq_pids)" ]] && break
                sleep 0.1
            done
        fi
        for p in $(_txc_rmq_pids); do kill -KILL "$p" 2>/dev/null || true; done
        for ((i = 0; i < 50; i++)); do
            [[ -z "$(_txc_rmq_pids)" ]] && break
            sleep 0.1
        done
    fi
    # The launcher (runuser + rabbitmq-server shell script) ends with the VM; make sure.
    if [[ -f "$TXC_RMQ_DIR/launcher.pid" ]]; then
        p="$(cat "$TXC_RMQ_DIR/launcher.pid" 2>/dev/null || true)"
        [[ "$p" =~ ^[0-9]+$ ]] && kill -TERM "$p" 2>/dev/null || true
        rm -f "$TXC_RMQ_DIR/launcher.pid"
    fi
}

# Restart our node, keeping its data (durable queues/messages survive a graceful stop).
txc_rabbitmq_restart() {
    local how="${1:-graceful}"
    [[ "$how" == graceful || "$how" == kill ]] || { _txc_err "txc_rabbitmq_restart: graceful or kill, not '$how'"; return 2; }
    [[ -n "${TXC_RMQ_DIR:-}" ]] || txc_services_load || return
    _txc_set_runuser
    _txc_rmq_stop "$how"
    _txc_rmq_launch
    _txc_rmq_wait
}

_txc_set_runuser() {
    if (( EUID == 0 )); then TXC_RUNUSER_RMQ=(runuser -u rabbitmq --); else TXC_RUNUSER_RMQ=(); fi
}

# epmd (port 4369) is shared by all Erlang nodes on the machine. If our start launched
# it, kill it at stop - but `epmd -kill` refuses while any node is still registered
# (e.g. the other mode's node), and we check for registered names first anyway.
_txc_epmd_cleanup() {
    [[ "${TXC_EPMD_OURS:-0}" == 1 ]] || return 0
    command -v epmd >/dev/null 2>&1 || return 0
    local names
    names="$(epmd -names 2>/dev/null)" || return 0
    grep -q '^name ' <<<"$names" && return 0
    epmd -kill >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------------------
# start / stop
# ---------------------------------------------------------------------------------------

# Remove a previous run dir - but only one that is recognisably ours, so a mistaken
# TXCOORD_RUN_DIR=$HOME cannot wipe a home directory.
_txc_wipe_run_dir() {
    local d="$1"
    if [[ "$d" != /* || "$d" == / || ${#d} -lt 6 ]]; then
        _txc_err "refusing to use run dir '$d' (must be an absolute path, not /)"
        return 1
    fi
    if [[ -e "$d" ]]; then
        if [[ -f "$d/.txcoord-run-dir" || -z "$(ls -A "$d" 2>/dev/null)" ]]; then
            rm -rf -- "$d"
        else
            _txc_err "refusing to wipe $d: it exists but is not a TxCoord run dir (no .txcoord-run-dir)"
            return 1
        fi
    fi
}

txc_services_start() {
    local mode="${1:-}" t0 port
    t0="$(_txc_now_us)"
    _txc_configure "$mode" || return
    _txc_ensure_binaries || return
    _txc_set_runuser

    # A previous run of this mode that was killed hard (kill -9, reboot of the shell)
    # may have left servers behind: stop them before wiping their files.
    # ... unless that run is still alive: then its servers are not leftovers.
    if [[ -f "$TXC_RUN_DIR/services.env" ]]; then
        local owner
        owner="$(sed -n 's/^TXC_OWNER_PID=//p' "$TXC_RUN_DIR/services.env")"
        # (a live bash with that pid; a recycled pid of some other program doesn't count)
        if [[ "$owner" =~ ^[0-9]+$ && "$owner" != "$$" ]] && kill -0 "$owner" 2>/dev/null \
                && [[ "$(cat "/proc/$owner/comm" 2>/dev/null)" == bash ]]; then
            _txc_err "another '$mode' run (pid $owner: $(ps -o args= -p "$owner" 2>/dev/null | cut -c1-80)) is using $TXC_RUN_DIR;" \
                     "wait for it, stop it, or use: $TXC_SERVICES_SCRIPT_PATH stop $mode"
            return 1
        fi
    fi
    # (services.env may be gone too - e.g. /tmp cleaned under running servers - so
    # leftovers are found by process, from the paths/node name this mode always uses.)
    # shellcheck disable=SC1091
    ( set +e
      [[ -f "$TXC_RUN_DIR/services.env" ]] && source "$TXC_RUN_DIR/services.env"
      if _txc_anything_running; then
          _txc_log "stopping leftovers of a previous '$mode' run in $TXC_RUN_DIR ..."
          _txc_stop_all quiet
      fi ) || true
    # From here on the run dir is ours: the trap's txc_services_stop may act on it. (Not
    # before: a start refused above must not stop the other run's servers on exit.)
    TXC_OWNED=1
    _txc_wipe_run_dir "$TXC_RUN_DIR" || return

    for port in "$TXC_PG_PORT" "$TXC_PG_NOPREP_PORT" "$TXC_AMQP_PORT" "$TXC_AMQPS_PORT" "$TXC_DIST_PORT"; do
        if _txc_port_open "$port"; then
            _txc_err "port $port (mode '$mode') is already in use by another program;" \
                     "see: ss -ltnp 'sport = :$port'"
            return 1
        fi
    done
    # (A machine tuned to a wider ephemeral range would bring the bind race back: say so.)
    local eph_lo eph_hi
    if read -r eph_lo eph_hi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
        for port in "$TXC_PG_PORT" "$TXC_PG_NOPREP_PORT" "$TXC_AMQP_PORT" "$TXC_AMQPS_PORT" "$TXC_DIST_PORT"; do
            if (( port >= eph_lo && port <= eph_hi )); then
                _txc_log "WARNING: port $port is inside this machine's ephemeral range ($eph_lo-$eph_hi);" \
                         "a restart may find it taken by an outgoing connection"
            fi
        done
    fi

    mkdir -p "$TXC_RUN_DIR/logs" && chmod 755 "$TXC_RUN_DIR" && touch "$TXC_RUN_DIR/.txcoord-run-dir" \
        || { _txc_err "cannot create run dir $TXC_RUN_DIR"; return 1; }
    if (( EUID == 0 )) && ! runuser -u postgres -- test -x "$TXC_RUN_DIR"; then
        _txc_err "the postgres user cannot enter $TXC_RUN_DIR (a parent directory is not world-searchable); choose another TXCOORD_RUN_DIR"
        return 1
    fi

    # RabbitMQ home (holds the Erlang cookie, shared with the stock rabbitmqctl wrapper).
    TXC_RMQ_HOME="$(_txc_default_rmq_home)"

    # Was epmd already running? If not, our node starts it and our stop may end it.
    TXC_EPMD_OURS=0
    # shellcheck disable=SC2034  # saved by _txc_write_state
    TXC_OWNER_PID="$$"   # the run.sh (or other) shell that owns these services
    if command -v epmd >/dev/null 2>&1 && ! epmd -names >/dev/null 2>&1; then TXC_EPMD_OURS=1; fi

    _txc_write_state
    _txc_export

    # --- RabbitMQ first: it is the slowest to boot, PostgreSQL starts meanwhile. ---
    mkdir -p "$TXC_RMQ_DIR/mnesia" "$TXC_RMQ_DIR/log"
    [[ "$TXC_RMQ_HOME" == "$TXC_RMQ_DIR/home" ]] && mkdir -p "$TXC_RMQ_HOME"
    # No plugins: the management UI costs start-up time and memory, and nothing needs it.
    echo '[].' >"$TXC_RMQ_DIR/enabled_plugins"
    : >"$TXC_RMQ_DIR/rabbitmq-env.conf"
    _txc_rmq_write_timeouts || return
    cat >"$TXC_RMQ_DIR/rabbitmq.conf" <<'EOF'
# generated by scripts/services.sh (listener address/port come from RABBITMQ_NODE_* env)
log.file.level = info
log.console = false
# `guest` may only connect over loopback (the default): we only use 127.0.0.1.
loopback_users.guest = true
# No TxCoord message comes near 1 MiB (a PrepareBranch for 32 participants is a few KB); the
# broker refuses anything larger, so one publish cannot put a 20 MB reason in a queue.
# Production brokers should set the same (README, limits); RabbitMQ's default is 128 MiB.
max_message_size = 1048576
EOF
    if (( TXC_TLS )); then _txc_tls_certs || return; fi
    (( TXC_TLS )) && {
        echo "# TLS listener (docs/tls.md), on the run's own certificates"
        echo "listeners.ssl.1 = 127.0.0.1:$TXC_AMQPS_PORT"
        echo "ssl_options.cacertfile = $TXC_TLS_DIR/ca.pem"
        echo "ssl_options.certfile = $TXC_TLS_DIR/server.crt"
        echo "ssl_options.keyfile = $TXC_TLS_DIR/server-rabbitmq.key"
        echo "ssl_options.verify = verify_none"
        echo "ssl_options.fail_if_no_peer_cert = false"
    } >>"$TXC_RMQ_DIR/rabbitmq.conf"
    if [[ -n "${TXCOORD_RABBITMQ_CONSUMER_TIMEOUT_MS:-}" ]]; then
        printf '# TXCOORD_RABBITMQ_CONSUMER_TIMEOUT_MS: a delivery unacknowledged this long closes its channel\nconsumer_timeout = %s\n' \
            "$TXCOORD_RABBITMQ_CONSUMER_TIMEOUT_MS" >>"$TXC_RMQ_DIR/rabbitmq.conf"
    fi
    _txc_chown rabbitmq "$TXC_RMQ_DIR"
    _txc_rmq_launch

    # --- PostgreSQL #1: coordinator journal + the two bank participants. ---
    _txc_pg_init "$TXC_PG_DIR" "$TXC_PG_PORT" 200 300 128MB || return
    (( TXC_TLS )) && {
        echo "# TLS (docs/tls.md), on the run's own certificates; plain connections are still accepted"
        echo "ssl = on"
        echo "ssl_cert_file = '$TXC_TLS_DIR/server.crt'"
        echo "ssl_key_file = '$TXC_TLS_DIR/server-postgres.key'"
    } >>"$TXC_PG_DIR/data/postgresql.conf"
    _txc_pg_start "$TXC_PG_DIR" "$TXC_PG_PORT" "main" || return
    _txc_pg_create_dbs "$TXC_PG_PORT" txcoord_coordinator bank_a bank_b || return

    # --- PostgreSQL #2 ("noprep"): max_prepared_transactions=0, for the test that
    # checks a participant gets a clear error when PREPARE TRANSACTION is disabled. ---
    _txc_pg_init "$TXC_PG_NOPREP_DIR" "$TXC_PG_NOPREP_PORT" 0 20 16MB || return
    _txc_pg_start "$TXC_PG_NOPREP_DIR" "$TXC_PG_NOPREP_PORT" "noprep" || return
    _txc_pg_create_dbs "$TXC_PG_NOPREP_PORT" noprep || return

    _txc_rmq_wait || return

    _txc_log "all services up in $(_txc_since "$t0") (run dir $TXC_RUN_DIR)"
    _txc_log "  TXCOORD_PG=$TXCOORD_PG"
    _txc_log "  TXCOORD_PG_NOPREPARED=$TXCOORD_PG_NOPREPARED"
    _txc_log "  TXCOORD_RABBITMQ=$TXCOORD_RABBITMQ  (node $TXCOORD_RABBITMQ_NODE)"
    (( TXC_TLS )) && _txc_log "  TXCOORD_RABBITMQ_TLS=$TXCOORD_RABBITMQ_TLS  TXCOORD_TLS_CA=$TXCOORD_TLS_CA"
    return 0
}

# True when a server of this run dir is still running.
_txc_anything_running() {
    local d
    [[ -n "$(_txc_rmq_pids)" ]] && return 0
    for d in "$TXC_PG_DIR" "$TXC_PG_NOPREP_DIR"; do
        _txc_pg_pid "$d" >/dev/null && return 0
    done
    return 1
}

_txc_stop_all() {
    local quiet="${1:-}"
    [[ -n "${TXC_RUN_DIR:-}" && -n "${TXC_PG_DIR:-}" ]] || return 0
    _txc_set_runuser
    if [[ -z "$quiet" ]] && _txc_anything_running; then
        _txc_log "stopping services of mode '$TXC_MODE' ($TXC_RUN_DIR) ..."
    fi
    if [[ -n "${TXC_RMQ_BIN:-}" ]] || _txc_find_rabbitmq_bin; then _txc_rmq_stop graceful; fi
    if [[ -n "${TXC_PG_BIN:-}" ]] || _txc_find_pg_bin; then
        _txc_pg_stop_dir "$TXC_PG_DIR" fast
        _txc_pg_stop_dir "$TXC_PG_NOPREP_DIR" fast
    fi
    _txc_epmd_cleanup
}

# Stop everything this shell started (or, given a mode, that mode's services).
# Idempotent: safe to call twice, from a trap, or when nothing runs.
txc_services_stop() {
    local mode="${1:-}"
    (
        # Never abort half-way: a failing stop step must not skip the next one.
        set +e
        if [[ -n "$mode" ]]; then
            txc_services_load "$mode" >/dev/null 2>&1 || _txc_configure "$mode" || exit 0
        elif [[ "${TXC_OWNED:-0}" != 1 ]]; then
            exit 0   # this shell started nothing (or its start was refused)
        fi
        _txc_stop_all
    )
    return 0
}

# Run a long foreground command (dotnet build/test, the demo driver) so that signals stay
# responsive: bash defers traps until a foreground child exits, so a SIGTERM sent to the
# script alone (a CI timeout) would wait for the whole test run. Instead the command runs
# in its own session/process group while we `wait` (which traps do interrupt), and the
# signal handler passes SIGTERM on to that whole group (test hosts included) before
# stopping the services. Ctrl-C therefore reaches it through our INT trap. Its stdin is
# /dev/null. Returns the command's exit status.
TXC_FG_PID=""
txc_run_fg() {
    local rc=0
    setsid "$@" </dev/null &
    TXC_FG_PID=$!
    wait "$TXC_FG_PID" || rc=$?
    TXC_FG_PID=""
    return "$rc"
}

# SIGTERM the foreground command's process group; SIGKILL after 15 s.
_txc_stop_fg() {
    local pid="$TXC_FG_PID" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    TXC_FG_PID=""
}

# Install the EXIT/INT/TERM traps: run the caller's hooks, then stop the services.
txc_services_trap() {
    trap '_txc_on_exit' EXIT
    trap '_txc_on_signal INT 130' INT
    trap '_txc_on_signal TERM 143' TERM
}

# Runs hooks + stop once, whatever mix of signals/exit triggers it.
txc_cleanup() {
    [[ "${TXC_CLEANED_UP:-0}" == 1 ]] && return 0
    TXC_CLEANED_UP=1
    # A second Ctrl-C must not interrupt the clean-up half-way (children inherit this).
    trap '' INT TERM
    local i
    set +e
    _txc_stop_fg
    for ((i = ${#TXC_CLEANUP_HOOKS[@]} - 1; i >= 0; i--)); do
        "${TXC_CLEANUP_HOOKS[$i]}"
    done
    txc_services_stop
    return 0
}

_txc_on_exit() {
    local rc=$?
    txc_cleanup
    exit "$rc"
}

_txc_on_signal() {
    printf '\n[services] got SIG%s: cleaning up ...\n' "$1" >&2
    txc_cleanup
    trap - EXIT
    exit "$2"
}

# ---------------------------------------------------------------------------------------
# executed as a command
# ---------------------------------------------------------------------------------------

_txc_status() {
    txc_services_load "${1:-}" >/dev/null || return
    local ok=0
    if "$TXC_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$TXC_PG_PORT"; then
        echo "PostgreSQL main    127.0.0.1:$TXC_PG_PORT  up"; else echo "PostgreSQL main    127.0.0.1:$TXC_PG_PORT  DOWN"; ok=1; fi
    if "$TXC_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$TXC_PG_NOPREP_PORT"; then
        echo "PostgreSQL noprep  127.0.0.1:$TXC_PG_NOPREP_PORT  up"; else echo "PostgreSQL noprep  127.0.0.1:$TXC_PG_NOPREP_PORT  DOWN"; ok=1; fi
    if _txc_port_open "$TXC_AMQP_PORT"; then
        echo "RabbitMQ $TXC_RMQ_NODE 127.0.0.1:$TXC_AMQP_PORT  up"; else echo "RabbitMQ $TXC_RMQ_NODE 127.0.0.1:$TXC_AMQP_PORT  DOWN"; ok=1; fi
    return "$ok"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    cmd="${1:-}"; shift || true
    case "$cmd" in
        start)
            txc_services_start "${1:?usage: services.sh start test|demo|bench}"
            _txc_log "left running; stop with: $TXC_SERVICES_SCRIPT_PATH stop $TXC_MODE" ;;
        stop)
            if [[ -n "${1:-}" ]]; then txc_services_stop "$1"
            else txc_services_load >/dev/null && txc_services_stop "$TXC_MODE"; fi ;;
        status)            _txc_status "${1:-}" ;;
        env)               txc_services_load "${1:-}" && env | grep '^TXCOORD_' | sort ;;
        pg-restart)        txc_pg_restart "${1:-fast}" ;;
        rabbitmq-restart)  txc_rabbitmq_restart "${1:-graceful}" ;;
        rabbitmqctl)       txc_rabbitmqctl "$@" ;;
        *)
            echo "usage: $0 start MODE | stop [MODE] | status [MODE] | env [MODE]" >&2
            echo "       $0 pg-restart [fast|immediate] | rabbitmq-restart [graceful|kill] | rabbitmqctl ARGS..." >&2
            echo "MODE is test, demo or bench; without MODE, TXCOORD_RUN_DIR/TXCOORD_MODE select the run." >&2
            exit 2 ;;
    esac
fi
