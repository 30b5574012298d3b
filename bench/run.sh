#!/usr/bin/env bash
# Leasedesk HTTP benchmark: the local runner (`leasedesk serve`, embedded SQLite) under
# wrk on 127.0.0.1, plus the sizes of the release Lambda binaries.
#
#   bench/run.sh                  # build, seed 10,000 contracts, three load phases
#
# Knobs (environment): THREADS (wrk -t, default 1), CONNECTIONS (50), DURATION (15,
# seconds per phase), WARMUP (3, seconds before each phase), SEED_COUNT (10000),
# SEED_PARALLEL (50), SKIP_BUILD=1 (use the binaries already in target/release),
# LAX=1 (do not hand responses to Lua; only wrk's own counters, which see status > 399,
# catch errors), KEEP=1 (keep the temporary folder with the logs and the database).
# See bench/README.md.
set -euo pipefail

THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
SEED_COUNT=${SEED_COUNT:-10000}
SEED_PARALLEL=${SEED_PARALLEL:-50}
SKIP_BUILD=${SKIP_BUILD:-0}
LAX=${LAX:-0}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LUA_DIR=$ROOT/bench/lua
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER_BIN=$TARGET_DIR/release/leasedesk

EMAIL=bench@example.se
PASSWORD=Vinterljus-over-Kiruna-2026

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

for tool in wrk curl jq /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install wrk curl jq time)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/leasedesk-bench.XXXXXX")
SERVER_PID=

cleanup() {
    local status=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "bench: server did not stop within 10 s; killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $KEEP == 1 ]]; then
        echo "bench: logs and data kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
log "machine"
CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo "cpus: $(nproc) (${CPU_MODEL:-unknown}); memory: $(free -g | awk '/^Mem:/ {print $2}') GiB; kernel: $(uname -r)"
wrk --version 2>&1 | head -1 || true
echo "$(rustc --version); $(curl --version | head -1 | cut -d' ' -f1-2)"
REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Changes to the code under test (bench/ itself does not count).
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no -- . ':!bench' 2>/dev/null) ]]; then
    REVISION="$REVISION+changes"
fi
echo "revision: $REVISION"

# ---------------------------------------------------------------------------------------
# Two cargo invocations on purpose: one build of several packages unifies their features,
# and the local runner turns on the embedded store in crates the Lambda binaries share.
if [[ $SKIP_BUILD != 1 ]]; then
    log "build: cargo build --release -p leasedesk"
    (cd "$ROOT" && cargo build --release -p leasedesk)
    log "build: cargo build --release -p auth -p contracts -p apidoc -p rates --bins"
    (cd "$ROOT" && cargo build --release -p auth -p contracts -p apidoc -p rates --bins)
fi
[[ -x $SERVER_BIN ]] || die "$SERVER_BIN is missing (run without SKIP_BUILD=1)"

# ---------------------------------------------------------------------------------------
log "server"
# Port 0: the kernel picks a free port, and the runner prints the address it got.
RUST_LOG=warn "$SERVER_BIN" serve --no-rates-polling --addr 127.0.0.1:0 --data-dir "$WORK/data" \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE=
for _ in $(seq 1 150); do
    BASE=$(sed -n 's/^Leasedesk is listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' \
        "$WORK/server.log" | head -1)
    [[ -n $BASE ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "server exited"; }
    sleep 0.2
done
[[ -n $BASE ]] || { cat "$WORK/server.log" >&2; die "server did not start in 30 s"; }
for _ in $(seq 1 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/openapi.json" || true)
    [[ $code == 200 ]] && break
    sleep 0.2
done
[[ $code == 200 ]] || die "server at $BASE does not answer"
echo "pid $SERVER_PID at $BASE, data in $WORK/data, RUST_LOG=warn"

server_cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------
log "sign-up and login"
code=$(curl -s -o "$WORK/signup.json" -w '%{http_code}' --max-time 30 \
    -H 'content-type: application/json' \
    -d "{\"organizationName\":\"Bench AB\",\"organizationNumber\":\"556074-3089\",\"name\":\"Bench User\",\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" \
    "$BASE/auth/signup")
[[ $code == 201 ]] || { cat "$WORK/signup.json" >&2; die "sign-up answered $code"; }

# A fresh access token (valid 15 minutes); called before every phase.
login() {
    local body code
    body=$(curl -s -w '\n%{http_code}' --max-time 30 -H 'content-type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" "$BASE/auth/login")
    code=${body##*$'\n'}
    [[ $code == 200 ]] || die "login answered $code: ${body%$'\n'*}"
    TOKEN=$(jq -er .accessToken <<<"${body%$'\n'*}") || die "no accessToken in the login answer"
}
login
echo "signed up and logged in as $EMAIL"

# ---------------------------------------------------------------------------------------
log "seed: $SEED_COUNT contracts, curl --parallel --parallel-max $SEED_PARALLEL"
# One curl process, one keep-alive connection per parallel slot; a config block per
# contract; every status code is written out and counted.
login
{
    echo 'parallel'
    echo "parallel-max = $SEED_PARALLEL"
    for ((n = 1; n <= SEED_COUNT; n++)); do
        echo 'no-progress-meter'
        printf 'url = "%s/contracts"\n' "$BASE"
        printf 'header = "Authorization: Bearer %s"\n' "$TOKEN"
        echo 'header = "content-type: application/json"'
        printf 'data = "{\\"contractNumber\\":\\"B-%06d\\",\\"lessor\\":\\"Volvofinans Bank AB\\",\\"description\\":\\"Volvo XC60\\",\\"category\\":\\"vehicle\\",\\"startDate\\":\\"2024-03-01\\",\\"endDate\\":\\"2027-02-28\\",\\"payment\\":{\\"amount\\":689900,\\"currency\\":\\"SEK\\"},\\"paymentFrequency\\":\\"monthly\\",\\"paymentTiming\\":\\"advance\\",\\"interestRate\\":\\"4.95\\"}"\n' "$n"
        echo 'output = "/dev/null"'
        # shellcheck disable=SC2028 # the \n is for curl's config reader
        echo 'write-out = "%{http_code}\n"'
        echo 'max-time = 30'
        if ((n < SEED_COUNT)); then echo 'next'; fi
    done
} >"$WORK/seed.curl"
seed_start=$(date +%s.%N)
timeout 600 curl -K "$WORK/seed.curl" >"$WORK/seed.codes" 2>"$WORK/seed.err" || true
seed_end=$(date +%s.%N)
seed_created=$(grep -c '^201$' "$WORK/seed.codes" || true)
seed_other=$(grep -vc '^201$' "$WORK/seed.codes" || true)
SEED_SECONDS=$(awk -v a="$seed_start" -v b="$seed_end" 'BEGIN {printf "%.2f", b - a}')
SEED_RATE=$(awk -v n="$seed_created" -v s="$SEED_SECONDS" 'BEGIN {printf "%.0f", n / s}')
echo "created $seed_created in $SEED_SECONDS s: $SEED_RATE contracts/s (other answers: $seed_other)"
if [[ $seed_other != 0 ]]; then
    sort "$WORK/seed.codes" | uniq -c >&2
    head -5 "$WORK/seed.err" >&2
    die "seeding had $seed_other answers other than 201"
fi
[[ $seed_created == "$SEED_COUNT" ]] || die "seeding created $seed_created, not $SEED_COUNT"

# Count what the API lists, and keep the ids for the GET phase.
login
: >"$WORK/ids.txt"
cursor=
pages=0
while :; do
    url="$BASE/contracts?limit=200"
    [[ -n $cursor ]] && url="$url&cursor=$(jq -rn --arg c "$cursor" '$c|@uri')"
    curl -sf --max-time 30 -H "Authorization: Bearer $TOKEN" "$url" >"$WORK/page.json" \
        || die "listing page $((pages + 1)) failed"
    jq -r '.items[].id' "$WORK/page.json" >>"$WORK/ids.txt"
    pages=$((pages + 1))
    cursor=$(jq -r '.nextCursor // empty' "$WORK/page.json")
    [[ -z $cursor ]] && break
    ((pages < 1000)) || die "more than 1000 pages"
done
listed=$(sort -u "$WORK/ids.txt" | wc -l)
echo "listed $listed distinct contracts in $pages pages"
[[ $listed == "$SEED_COUNT" ]] || die "the list shows $listed contracts, not $SEED_COUNT"

# ---------------------------------------------------------------------------------------
declare -a ROWS=() CPU_ROWS=()
FAILED=0
LAX_ARG=()
[[ $LAX == 1 ]] && LAX_ARG=(lax)

# run_wrk NAME SECONDS SCRIPT PATH [SCRIPT ARGS...]: one bounded wrk run; prints wrk's
# report and leaves the script's RESULT line in $WORK/NAME.out.
run_wrk() {
    local name=$1 seconds=$2 script=$3 path=$4
    shift 4
    local before after
    before=$(server_cpu_ticks)
    (cd "$LUA_DIR" && /usr/bin/time -f 'WRKCPU user=%U sys=%S wall=%e' -o "$WORK/$name.time" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" --timeout 5s --latency \
            -H "Authorization: Bearer $TOKEN" -s "$script" "$BASE$path" -- "$@" "${LAX_ARG[@]}") \
        >"$WORK/$name.out" 2>&1 || { cat "$WORK/$name.out" >&2; die "wrk failed in $name"; }
    after=$(server_cpu_ticks)
    echo "SERVERCPU seconds=$(awk -v t=$((after - before)) -v h="$CLK_TCK" 'BEGIN {printf "%.2f", t / h}')" \
        >>"$WORK/$name.out"
    cat "$WORK/$name.time" >>"$WORK/$name.out"
    cat "$WORK/$name.out"
}

# field NAME KEY: KEY's value on the RESULT line that the Lua script's done() printed.
field() { sed -n "/^RESULT /s/.*[ ]$2=\([^ ]*\).*/\1/p" "$WORK/$1.out" | head -1; }

# phase LABEL NAME SCRIPT PATH [SCRIPT ARGS...] (script args may contain @PHASE@, which
# becomes warm-up or run specific, for unique contract numbers)
phase() {
    local label=$1 name=$2 script=$3 path=$4
    shift 4
    login
    log "$label: warm-up ${WARMUP}s"
    run_wrk "$name-warmup" "$WARMUP" "$script" "$path" "${@//@PHASE@/W$name}" >/dev/null
    check "$name-warmup" "$label (warm-up)"
    log "$label: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency $path"
    run_wrk "$name" "$DURATION" "$script" "$path" "${@//@PHASE@/R$name}"
    check "$name" "$label"
    local errors rps secs wrk_cpu server_cpu
    errors=$(errors_of "$name")
    rps=$(field "$name" rps)
    secs=$(field "$name" seconds)
    server_cpu=$(sed -n 's/^SERVERCPU seconds=//p' "$WORK/$name.out")
    wrk_cpu=$(awk '/^WRKCPU/ {split($2, u, "="); split($3, s, "="); printf "%.2f", u[2] + s[2]}' "$WORK/$name.out")
    ROWS+=("| $label | $(printf '%.0f' "$rps") | $(field "$name" p50_ms) ms | $(field "$name" p99_ms) ms | $errors |")
    CPU_ROWS+=("| $label | $(awk -v c="$server_cpu" -v s="$secs" 'BEGIN {printf "%.0f%%", 100 * c / s}') | $(awk -v c="$wrk_cpu" -v s="$secs" 'BEGIN {printf "%.0f%%", 100 * c / s}') |")
}

errors_of() {
    local name=$1 total=0 key
    for key in non2xx status_gt399 connect read write timeout; do
        total=$((total + $(field "$name" "$key")))
    done
    # non2xx and status_gt399 overlap (a 4xx/5xx is in both): report the larger one.
    local n s
    n=$(field "$name" non2xx)
    s=$(field "$name" status_gt399)
    total=$((total - (n < s ? n : s)))
    echo "$total"
}

check() {
    local name=$1 label=$2 line errors
    line=$(grep '^RESULT ' "$WORK/$name.out" || true)
    [[ -n $line ]] || die "$label: no RESULT line from the Lua script"
    errors=$(errors_of "$name")
    if [[ $errors != 0 ]]; then
        echo "bench: $label had $errors errors: $line" >&2
        FAILED=1
    fi
}

phase "GET /contracts/{id}" get get_one.lua /contracts/ "$WORK/ids.txt"
phase "GET /contracts?limit=50" list list.lua '/contracts?limit=50'
phase "POST /contracts" create create.lua /contracts '@PHASE@'

# ---------------------------------------------------------------------------------------
log "Lambda binaries"
LAMBDA_ROWS=()
for bin in auth contracts apidoc rates rates-poller; do
    file=$TARGET_DIR/release/$bin
    [[ -f $file ]] || die "$file is missing"
    bytes=$(stat -c %s "$file")
    LAMBDA_ROWS+=("| $bin | $bytes | $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') |")
done
ARCH=$(uname -m)
# Optional: arm64 as cargo-lambda packages it, where cargo-lambda and the target exist.
ARM_ROWS=()
if cargo lambda --version >/dev/null 2>&1; then
    log "cargo lambda build --release --arm64"
    if (cd "$ROOT" && cargo lambda build --release --arm64 --bin auth --bin contracts --bin apidoc --bin rates --bin rates-poller) \
        >"$WORK/cargo-lambda.log" 2>&1; then
        for bin in auth contracts apidoc rates rates-poller; do
            file=$TARGET_DIR/lambda/$bin/bootstrap
            [[ -f $file ]] && ARM_ROWS+=("| $bin (arm64 bootstrap) | $(stat -c %s "$file") | $(awk -v b="$(stat -c %s "$file")" 'BEGIN {printf "%.1f", b / 1048576}') |")
        done
    else
        echo "cargo lambda build failed (see $WORK/cargo-lambda.log); arm64 sizes skipped" >&2
    fi
fi

# ---------------------------------------------------------------------------------------
log "results"
cat <<EOF

Leasedesk local runner at $REVISION, $(date -u +%Y-%m-%d), $(nproc) cores (${CPU_MODEL:-unknown}), wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s after ${WARMUP}s warm-up, RUST_LOG=warn
Seeded $SEED_COUNT contracts in $SEED_SECONDS s: $SEED_RATE contracts/s (curl --parallel-max $SEED_PARALLEL)

| endpoint | req/s | p50 | p99 | errors |
| --- | ---: | ---: | ---: | ---: |
EOF
printf '%s\n' "${ROWS[@]}"
cat <<EOF

CPU during each phase (100% = one core; $(nproc) cores in all):

| endpoint | server CPU | wrk CPU |
| --- | ---: | ---: |
EOF
printf '%s\n' "${CPU_ROWS[@]}"
cat <<EOF

Release Lambda binaries ($ARCH, stripped; cargo-lambda packages each as \`bootstrap\`):

| binary | bytes | MiB |
| --- | ---: | ---: |
EOF
printf '%s\n' "${LAMBDA_ROWS[@]}" ${ARM_ROWS[@]+"${ARM_ROWS[@]}"}

if [[ $FAILED != 0 ]]; then
    die "some phase had errors (see above)"
fi
