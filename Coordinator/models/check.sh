#!/usr/bin/env bash
# Coordinator/models/check.sh - model-check one property of one Promela model with spin.
#
#   Coordinator/models/check.sh [options] MODEL.pml CLAIM [-DNAME[=VALUE]...]
#
#   MODEL.pml   a model in this folder (twopc.pml, threepc.pml)
#   CLAIM       the name of an `ltl` property in the model
#   -D...       spin preprocessor defines: the model's variants (see the top of each model)
#
# Options:
#   --liveness  CLAIM is a liveness property (<>, cycles): compiled and searched for
#               acceptance cycles under weak fairness (pan -a -f). Default: safety.
#   --trail     on an error, print the counterexample (the model's printf lines, one
#               per step) and the final values of the globals. Default: the printf lines.
#   --quiet     no counterexample and no pan output, only the RESULT line
#   --big       for state spaces beyond a few tens of millions: pan stores states compressed
#               (-DCOLLAPSE, lossless, slower) and may use 12 GB instead of 4
#
# Prints pan's report, then (on an error) the counterexample, then one line:
#   RESULT model=twopc.pml claim=consistent errors=0 states=290682 transitions=... depth=147 seconds=0.23 complete=yes
# complete=no when pan ran out of search depth or memory: then errors=0 proves nothing.
# Exit code: 0 when the check ran to a result (whatever the number of errors), 1 when it
# could not run (spin/gcc missing, bad model, incomplete search), 2 for bad usage.
#
# The checks TxCoord relies on, and what each must find, are the NUnit tests in
# Tests/TxCoord.Tests.Unit/Models/ModelCheckTests.cs (run by ./run.sh test); this script is
# what they call, and what a human runs to look at a counterexample:
#   Coordinator/models/check.sh threepc.pml consistent -DPARTITIONS -DNO_QUORUM -DMAXLOSS=0 -DMAXPCRASH=0
set -euo pipefail

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

LIVENESS=0 TRAIL=short QUIET=0 BIG=0
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --liveness) LIVENESS=1 ;;
        --trail) TRAIL=full ;;
        --quiet) QUIET=1 ;;
        --big) BIG=1 ;;
        --help) usage ;;
        *) echo "check.sh: unknown option $1" >&2; usage ;;
    esac
    shift
done
[[ $# -ge 2 ]] || usage
MODEL="$1" CLAIM="$2"; shift 2
DEFINES=()
for d in "$@"; do
    [[ "$d" =~ ^-D[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_]+)?$ ]] || { echo "check.sh: not a define: '$d' (use -DNAME or -DNAME=VALUE)" >&2; exit 2; }
    DEFINES+=("$d")
done
[[ "$CLAIM" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "check.sh: not a claim name: '$CLAIM'" >&2; exit 2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL_PATH="$HERE/$MODEL"
[[ "$MODEL" != */* && -f "$MODEL_PATH" ]] || { echo "check.sh: no model '$MODEL' in $HERE" >&2; exit 2; }
grep -qE "^ltl[[:space:]]+$CLAIM[[:space:]]*\{" "$MODEL_PATH" || { echo "check.sh: $MODEL has no 'ltl $CLAIM'" >&2; exit 2; }

for tool in spin gcc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check.sh: '$tool' is not installed. ./run.sh test installs it (Debian: apt-get install -y spin gcc libc6-dev)." >&2
        exit 1
    fi
done

# One build directory per (model text, defines, mode), shared by every check that needs the
# same pan: spin -a and gcc run once, each claim is a separate pan run.
CACHE="${TXCOORD_SPIN_CACHE:-${TMPDIR:-/tmp}/txcoord-spin-$(id -u)}"
KEY="$( { cat "$MODEL_PATH"; printf '%s\n' "${DEFINES[@]+"${DEFINES[@]}"}" "liveness=$LIVENESS" "big=$BIG"; } | sha256sum | cut -c1-16)"
BUILD="$CACHE/${MODEL%.pml}-$KEY"
if [[ ! -x "$BUILD/pan" ]]; then
    mkdir -p "$CACHE"
    STAGE="$(mktemp -d "$CACHE/build.XXXXXX")"
    cp "$MODEL_PATH" "$STAGE/$MODEL"
    (
        cd "$STAGE"
        spin -a "${DEFINES[@]+"${DEFINES[@]}"}" "$MODEL" >spin.log 2>&1 || { cat spin.log >&2; echo "check.sh: spin -a failed" >&2; exit 1; }
        GCCFLAGS=(-O2 -w -DVECTORSZ=2048)
        if (( BIG )); then GCCFLAGS+=(-DMEMLIM=12288 -DCOLLAPSE); else GCCFLAGS+=(-DMEMLIM=4096); fi
        (( LIVENESS )) && GCCFLAGS+=(-DNFAIR=4)
        gcc "${GCCFLAGS[@]}" -o pan pan.c 2>gcc.log || { cat gcc.log >&2; echo "check.sh: gcc failed" >&2; exit 1; }
        rm -f pan.[bchmpt] _spin_nvr.tmp   # only the verifier and the model are needed from here
    ) || { rm -rf "$STAGE"; exit 1; }
    # Another check may have built the same pan meanwhile: keep whichever came first.
    mv -T "$STAGE" "$BUILD" 2>/dev/null || rm -rf "$STAGE"
fi

touch "$BUILD"
# Builds of model texts nobody checked for a week go.
find "$CACHE" -mindepth 1 -maxdepth 1 -mtime +7 -exec rm -rf {} + 2>/dev/null || true

RUN="$(mktemp -d "$CACHE/run.XXXXXX")"
trap 'rm -rf "$RUN"' EXIT
cp -p "$BUILD/$MODEL" "$BUILD/pan" "$RUN/"
cd "$RUN"
PANFLAGS=(-n -m2000000 -N "$CLAIM")
(( BIG )) && PANFLAGS+=(-w27)
(( LIVENESS )) && PANFLAGS+=(-a -f)
rc=0
./pan "${PANFLAGS[@]}" >pan.out 2>&1 || rc=$?
(( QUIET )) || cat pan.out

num() { sed -n "s/$1/\1/p" pan.out | head -n 1; }
# pan prints large counts as 1.0423317e+08
int() { if [[ -n "$1" ]]; then awk -v n="$1" 'BEGIN { printf "%.0f", n }'; fi; }
errors="$(num '.*errors: \([0-9][0-9]*\).*')"
states="$(int "$(num '^ *\([0-9][0-9.e+]*\) states, stored.*')")"
transitions="$(int "$(num '^ *\([0-9][0-9.e+]*\) transitions.*')")"
depth="$(num '.*depth reached \([0-9][0-9]*\).*')"
seconds="$(num '^pan: elapsed time \([0-9.e+-]*\) seconds.*')"
complete=yes
if grep -qE 'max search depth too small|out of memory|reached -DMEMLIM bound' pan.out; then complete=no; fi
if [[ -z "$errors" || -z "$states" ]]; then
    echo "check.sh: pan did not finish (exit code $rc); its output is above" >&2
    exit 1
fi

if (( errors > 0 && ! QUIET )) && ls ./*.trail >/dev/null 2>&1; then
    echo "---- counterexample (spin -t) ----"
    if [[ "$TRAIL" == full ]]; then
        spin -t -g "${DEFINES[@]+"${DEFINES[@]}"}" "$MODEL" 2>&1 | grep -vE '^\s*$|^ltl |processes created|_spin_nvr|failed assertion|terminates$' || true
    else
        spin -t "${DEFINES[@]+"${DEFINES[@]}"}" "$MODEL" 2>&1 \
            | grep -vE '^\s*$|^ltl |[Nn]ever claim|processes created|^#processes|^\s*[0-9]+:\s+proc|terminates$|^\s+[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\])? = |_spin_nvr|failed assertion|is newer than' || true
    fi
    echo "---- end of counterexample ----"
fi

echo "RESULT model=$MODEL claim=$CLAIM errors=$errors states=$states transitions=${transitions:-?} depth=${depth:-?} seconds=${seconds:-?} complete=$complete"
[[ "$complete" == yes ]] || { echo "check.sh: the search was incomplete (depth or memory bound): the result proves nothing" >&2; exit 1; }
