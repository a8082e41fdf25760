#!/usr/bin/env bash
# run.sh - one entry point for TxCoord: ./run.sh demo|test|bench [args]
#
# Each command starts its own private PostgreSQL + RabbitMQ (scripts/services.sh; ports
# and run dir depend on the command, so e.g. tests and the demo can run side by side),
# and stops them again on exit, Ctrl-C or failure.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO_ROOT"

usage() {
    cat >&2 <<'EOF'
usage: ./run.sh <command> [args...]

  test  [dotnet test args]   build the solution and run all tests against private
                             PostgreSQL/RabbitMQ; e.g. ./run.sh test --filter Name~Recovery
                             ends with one line "N passed, N failed[, N skipped]"
  demo  [transfers args]     run the coordinator, two bank participant services and the
                             transfers driver; e.g. ./run.sh demo --transfers 300 --concurrency 32
                             (TXCOORD_DEMO_HOLD=1 keeps everything running until Ctrl-C;
                             TXCOORD_DEMO_HOSTILE=1 then forges protocol messages as guest and
                             says whether the money moved; TXCOORD_DEMO_SENDER_AUTH=Off runs
                             the services unauthenticated, as guest)
  bench [bench args]         run bench/TxCoord.Bench against private services

Needs: the .NET 10 SDK, PostgreSQL server binaries (/usr/lib/postgresql/*/bin) and
rabbitmq-server (installed from Debian packages when missing; needs root).
EOF
    exit "${1:-2}"
}

[[ $# -ge 1 ]] || usage 2
COMMAND="$1"; shift
case "$COMMAND" in
    test|demo|bench) ;;
    -h|--help|help) usage 0 ;;
    *) echo "run.sh: unknown command '$COMMAND'" >&2; usage 2 ;;
esac

# shellcheck source=scripts/services.sh
source "$REPO_ROOT/scripts/services.sh"

T_START="$(_txc_now_us)"
say() { printf '==> %s\n' "$*"; }
die() { printf 'run.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# "1m 23.4s" since T_START
elapsed() {
    local tenths=$(( ($(_txc_now_us) - T_START) / 100000 ))
    local s=$(( tenths / 10 )) t=$(( tenths % 10 ))
    if (( s >= 60 )); then printf '%dm %d.%ds' $((s / 60)) $((s % 60)) "$t"; else printf '%d.%ds' "$s" "$t"; fi
}

require_dotnet() {
    if ! command -v dotnet >/dev/null 2>&1; then
        die "'dotnet' not found on PATH. Install the .NET 10 SDK (https://dotnet.microsoft.com/download/dotnet/10.0, or Microsoft's Debian packages: apt-get install dotnet-sdk-10.0)."
    fi
}

# Quiet, reproducible dotnet; no first-run banners or telemetry in logs.
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export DOTNET_GENERATE_ASPNET_CERTIFICATE=false
# When our output goes to a pipe (CI's `| tee`), build servers (MSBuild nodes, the
# compiler server) that outlive the build would inherit the pipe and keep it open for
# minutes. Don't start them there. Explicit settings from the caller win.
if [[ ! -t 1 || -n "${CI:-}" ]]; then
    export MSBUILDDISABLENODEREUSE="${MSBUILDDISABLENODEREUSE:-1}"
    export DOTNET_CLI_USE_MSBUILD_SERVER="${DOTNET_CLI_USE_MSBUILD_SERVER:-0}"
    export UseSharedCompilation="${UseSharedCompilation:-false}"
fi

build_solution() {
    say "building TxCoord.sln (Release) ..."
    local t0; t0="$(_txc_now_us)"
    if ! txc_run_fg dotnet build TxCoord.sln -c Release -nologo; then
        echo "run.sh: build FAILED (after $(elapsed))" >&2
        return 1
    fi
    say "build done in $(_txc_since "$t0")"
}

# ---------------------------------------------------------------------------------------
# test
# ---------------------------------------------------------------------------------------

# Sum the <Counters> of every .trx file: one per test assembly. Prints "P F S".
#   passed  = passed
#   failed  = failed + error + timeout + aborted
#   skipped = everything else (NUnit Ignore/Inconclusive are "not executed")
count_trx_results() {
    local dir="$1" f counters p=0 fl=0 s=0 total passed failed error timeout aborted
    attr() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$counters"; }
    shopt -s nullglob
    for f in "$dir"/*.trx "$dir"/*/*.trx; do
        counters="$(grep -o '<Counters [^>]*>' "$f" | head -n 1 || true)"
        [[ -n "$counters" ]] || continue
        total="$(attr total)"; passed="$(attr passed)"; failed="$(attr failed)"
        error="$(attr error)"; timeout="$(attr timeout)"; aborted="$(attr aborted)"
        local f_all=$(( ${failed:-0} + ${error:-0} + ${timeout:-0} + ${aborted:-0} ))
        p=$(( p + ${passed:-0} ))
        fl=$(( fl + f_all ))
        s=$(( s + ${total:-0} - ${passed:-0} - f_all ))
    done
    shopt -u nullglob
    echo "$p $fl $s"
}

cmd_test() {
    require_dotnet
    # Trap first: a start that fails half-way must still stop what did start.
    txc_services_trap
    txc_services_start test
    export TXCOORD_TEST_PG="$TXCOORD_PG"
    export TXCOORD_TEST_PG_NOPREPARED="$TXCOORD_PG_NOPREPARED"
    export TXCOORD_TEST_RABBITMQ="$TXCOORD_RABBITMQ"

    build_solution || exit 1
    "$REPO_ROOT/scripts/ensure-chromium.sh" || echo "run.sh: Chromium is missing: the dashboard's browser tests will fail" >&2
    txc_ensure_model_checker   # spin + gcc for the protocol model checks (Coordinator/models)

    # A fresh results dir per run, so only this run's .trx files are counted. Without
    # LogFileName each test assembly writes its own uniquely named .trx file.
    local results="$REPO_ROOT/TestResults/run-sh"
    rm -rf "$results"
    mkdir -p "$results"
    say "running tests (dotnet test; results in $results) ..."
    local rc=0
    txc_run_fg dotnet test TxCoord.sln -c Release --no-build \
        --results-directory "$results" \
        --logger "trx" \
        --logger "console;verbosity=normal" \
        "$@" || rc=$?

    local counts passed failed skipped
    counts="$(count_trx_results "$results")"
    read -r passed failed skipped <<<"$counts"
    if (( rc != 0 && failed == 0 )); then
        # e.g. a test host crash, a bad --filter, or no test assembly found
        echo "run.sh: dotnet test exited with code $rc without failed test results: counting 1 failure" >&2
        failed=1
    fi

    # Stop services now (not in the trap) so that the summary really is the last line.
    txc_cleanup
    say "test run took $(elapsed)"
    local summary="$passed passed, $failed failed"
    (( skipped > 0 )) && summary+=", $skipped skipped"
    echo "$summary"
    (( failed == 0 && rc == 0 )) || exit 1
}

# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------

DEMO_NAMES=()
DEMO_PIDS=()
DEMO_LOGS=()

# start_bg NAME LOG VAR=VALUE... -- COMMAND ARGS...
# In its own session (setsid) so Ctrl-C reaches only the foreground transfers driver;
# the background services are stopped by the trap, in order.
start_bg() {
    local name="$1" log="$2"; shift 2
    local envs=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do envs+=("$1"); shift; done
    shift
    ( exec setsid env "${envs[@]}" "$@" ) >"$log" 2>&1 </dev/null &
    DEMO_NAMES+=("$name"); DEMO_PIDS+=("$!"); DEMO_LOGS+=("$log")
    say "started $name (pid $!), log: $log"
}

# True when one of the background processes has exited.
any_dead() {
    local pid
    for pid in "${DEMO_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || return 0; done
    return 1
}

# Say which background processes have exited, with their exit code and log tail (each
# one once). Returns 1 when any has exited.
DEMO_REPORTED=()
report_dead() {
    local i rc dead=0
    for i in "${!DEMO_PIDS[@]}"; do
        kill -0 "${DEMO_PIDS[$i]}" 2>/dev/null && continue
        dead=1
        [[ -n "${DEMO_REPORTED[$i]:-}" ]] && continue
        DEMO_REPORTED[i]=1
        rc=0; wait "${DEMO_PIDS[$i]}" 2>/dev/null || rc=$?
        echo "run.sh: ${DEMO_NAMES[$i]} exited early (exit code $rc); last lines of ${DEMO_LOGS[$i]}:" >&2
        tail -n 30 "${DEMO_LOGS[$i]}" >&2 || true
        echo "-----" >&2
    done
    return "$dead"
}

# Cleanup hook: SIGTERM (the .NET host shuts down gracefully), SIGKILL after 15 s.
stop_demo_processes() {
    local pid i alive
    (( ${#DEMO_PIDS[@]} > 0 )) || return 0
    say "stopping demo processes ..."
    for pid in "${DEMO_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 150; i++)); do
        alive=0
        for pid in "${DEMO_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        (( alive )) || break
        sleep 0.1
    done
    for pid in "${DEMO_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

require_built() {
    local f
    for f in "$@"; do
        [[ -f "$f" ]] || die "$f is missing after the build (is the project in TxCoord.sln?)"
    done
}

cmd_demo() {
    require_dotnet
    # Trap first: a start that fails half-way must still stop what did start.
    TXC_CLEANUP_HOOKS+=(stop_demo_processes)
    txc_services_trap
    txc_services_start demo
    build_solution || exit 1

    local out=bin/Release/net10.0
    local coordinator="Coordinator/TxCoord.Coordinator.Host/$out/TxCoord.Coordinator.Host.dll"
    local participant="samples/Bank/TxCoord.Samples.Bank.Participant/$out/TxCoord.Samples.Bank.Participant.dll"
    local transfers="samples/Bank/TxCoord.Samples.Bank.Transfers/$out/TxCoord.Samples.Bank.Transfers.dll"
    local hostile="samples/Bank/TxCoord.Samples.Bank.Hostile/$out/TxCoord.Samples.Bank.Hostile.dll"
    require_built "$coordinator" "$participant" "$transfers" "$hostile"

    local logs="$TXCOORD_RUN_DIR/logs"
    local dashboard_url="http://127.0.0.1:21080"
    local bank_a="$TXCOORD_PG;Database=bank_a" bank_b="$TXCOORD_PG;Database=bank_b"

    # Each service logs in to RabbitMQ as its own user, allowed only its own queues and the inbox
    # exchanges it sends to, with sender authentication on: the compose file's users and
    # permissions (docker/rabbitmq/definitions.json, docs/least-privilege.md). The passwords go in
    # the services' environment, never on a command line. TXCOORD_DEMO_SENDER_AUTH=Off runs every
    # service as guest with nothing checked (what anyone on the vhost could then forge: docs/security.md).
    local auth="${TXCOORD_DEMO_SENDER_AUTH:-BrokerUser}" broker="${TXCOORD_RABBITMQ#*@}"
    local rmq_coordinator="$TXCOORD_RABBITMQ" rmq_bank_a="$TXCOORD_RABBITMQ" rmq_bank_b="$TXCOORD_RABBITMQ" rmq_transfers="$TXCOORD_RABBITMQ"
    local security=("TxCoord__Security__SenderAuthentication=Off")
    case "$auth" in
        BrokerUser)
            local defs="$TXCOORD_RUN_DIR/broker-users.json"
            cp docker/rabbitmq/definitions.json "$defs" && chmod 644 "$defs" \
                && txc_rabbitmqctl import_definitions "$defs" >"$TXCOORD_RUN_DIR/broker-users.log" 2>&1 \
                || die "could not create the demo's broker users (log: $TXCOORD_RUN_DIR/broker-users.log)"
            rmq_coordinator="amqp://txcoord-coordinator:coordinator-demo-password@$broker"
            rmq_bank_a="amqp://txcoord-bank-a:bank-a-demo-password@$broker"
            rmq_bank_b="amqp://txcoord-bank-b:bank-b-demo-password@$broker"
            rmq_transfers="amqp://txcoord-transfers:transfers-demo-password@$broker"
            security=("TxCoord__Security__SenderAuthentication=BrokerUser"
                "TxCoord__Security__Coordinators__demo=txcoord-coordinator"
                "TxCoord__Security__Participants__bank-a=txcoord-bank-a"
                "TxCoord__Security__Participants__bank-b=txcoord-bank-b")
            say "broker users: one per service (docker/rabbitmq/definitions.json), sender authentication BrokerUser" ;;
        Off) say "TXCOORD_DEMO_SENDER_AUTH=Off: every service as guest, sender authentication off" ;;
        *) die "TXCOORD_DEMO_SENDER_AUTH='$auth' is invalid: use BrokerUser (the default) or Off" ;;
    esac

    start_bg coordinator "$logs/coordinator.log" \
        "ConnectionStrings__Journal=$TXCOORD_PG;Database=txcoord_coordinator" \
        "ConnectionStrings__RabbitMq=$rmq_coordinator" "${security[@]}" \
        "TxCoord__CoordinatorId=demo" \
        "TxCoord__Participants__bank-a__ConnectionString=$bank_a" \
        "TxCoord__Participants__bank-b__ConnectionString=$bank_b" \
        "ASPNETCORE_URLS=$dashboard_url" \
        -- dotnet "$coordinator"
    start_bg bank-a "$logs/bank-a.log" \
        "Bank__ParticipantId=bank-a" \
        "ConnectionStrings__Bank=$bank_a" \
        "ConnectionStrings__RabbitMq=$rmq_bank_a" "${security[@]}" \
        "TxCoord__CoordinatorId=demo" \
        -- dotnet "$participant"
    start_bg bank-b "$logs/bank-b.log" \
        "Bank__ParticipantId=bank-b" \
        "ConnectionStrings__Bank=$bank_b" \
        "ConnectionStrings__RabbitMq=$rmq_bank_b" "${security[@]}" \
        "TxCoord__CoordinatorId=demo" \
        -- dotnet "$participant"

    # Misconfiguration (bad connection string, broker unreachable) makes a .NET host exit
    # within a few seconds: catch that here rather than with a confusing transfers error.
    local warmup="${TXCOORD_DEMO_WARMUP_SECONDS:-2}" i
    say "checking for ${warmup}s that the services stay up (the driver then waits until they answer) ..."
    for ((i = 0; i < warmup * 5; i++)); do
        any_dead && break
        sleep 0.2
    done
    report_dead || die "a demo service died during start-up (logs in $logs)"

    say "dashboard: $dashboard_url/   (JSON API $dashboard_url/api/overview, metrics $dashboard_url/metrics, health $dashboard_url/health)   logs: $logs/"
    say "running transfers: dotnet $transfers $*"
    local rc=0
    txc_run_fg env "ConnectionStrings__BankA=$bank_a" \
        "ConnectionStrings__BankB=$bank_b" \
        "ConnectionStrings__RabbitMq=$rmq_transfers" "${security[@]}" \
        "TxCoord__CoordinatorId=demo" \
        dotnet "$transfers" "$@" || rc=$?

    report_dead || echo "run.sh: (a background service died during the run; see above)" >&2
    if [[ "${TXCOORD_DEMO_HOSTILE:-0}" == 1 && $rc -eq 0 ]]; then
        # Anyone on the vhost: guest, whom no service's permissions or sender map name.
        say "TXCOORD_DEMO_HOSTILE=1: forging protocol messages as broker user guest (samples/Bank/TxCoord.Samples.Bank.Hostile)"
        txc_run_fg env "ConnectionStrings__BankA=$bank_a" \
            "ConnectionStrings__RabbitMq=$TXCOORD_RABBITMQ" \
            "TxCoord__CoordinatorId=demo" \
            dotnet "$hostile" || rc=$?
        report_dead || echo "run.sh: (a background service died during the hostile-message probe; see above)" >&2
    fi
    if [[ "${TXCOORD_DEMO_HOLD:-0}" == 1 && $rc -eq 0 ]]; then
        say "TXCOORD_DEMO_HOLD=1: services keep running; coordinator $dashboard_url/health - press Ctrl-C to stop"
        while ! any_dead; do sleep 1; done
        report_dead || true
    fi
    say "logs: $logs/ (kept until the next demo run)"
    say "demo took $(elapsed); exit code $rc"
    exit "$rc"
}

# ---------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------

cmd_bench() {
    require_dotnet
    # Trap first: a start that fails half-way must still stop what did start.
    txc_services_trap
    txc_services_start bench
    # The bench reads TXCOORD_PG / TXCOORD_PG_NOPREPARED / TXCOORD_RABBITMQ /
    # TXCOORD_RABBITMQ_NODE / TXCOORD_RUN_DIR, all exported by txc_services_start.
    say "running bench/TxCoord.Bench (Release) $*"
    local rc=0
    txc_run_fg dotnet run -c Release --project bench/TxCoord.Bench -- "$@" || rc=$?
    say "bench took $(elapsed); exit code $rc"
    exit "$rc"
}

"cmd_$COMMAND" "$@"
