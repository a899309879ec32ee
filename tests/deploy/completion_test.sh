#!/usr/bin/env bash
# deploy/bash-completion/docpipe, sourced into bash with bash-completion, against the real binary
# (ctest "deploy: bash completion ...", label deploy): the commands of `docpipe --help`, every
# option of `docpipe CMD --help`, option values, job files, and job ids from a stub daemon's
# `status --json`, from a real daemon that is down (nothing, at once), from a stuck one (cut off
# by the timeout), and from a spool's finished jobs.
# Usage: tests/deploy/completion_test.sh DOCPIPE_BINARY SOURCE_DIR
set -uo pipefail
docpipe=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$2
bash_completion=/usr/share/bash-completion/bash_completion
[ -r "$bash_completion" ] || {
  echo "FAIL: $bash_completion is missing (scripts/deps --test installs bash-completion)" >&2
  exit 1
}
# shellcheck source=/dev/null
source "$bash_completion"
# shellcheck source=/dev/null
source "$src/deploy/bash-completion/docpipe"

tmp=$(mktemp -d /tmp/docpipe-completion.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# Completes LINE (the cursor at its end) as bash would after TAB; prints COMPREPLY sorted.
complete_line() {
  local line=$1
  read -r -a COMP_WORDS <<<"$line"
  [[ $line == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE=$line
  COMP_POINT=${#line}
  COMPREPLY=()
  _docpipe "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort
}
# expect LINE WORD...: every WORD is offered; expect_not LINE WORD...: none is.
expect() {
  local line=$1 got word
  shift
  got=$(complete_line "$line")
  for word in "$@"; do
    grep -qxF -- "$word" <<<"$got" ||
      fail "\"$line\" does not offer $word (offers: ${got//$'\n'/ })"
  done
}
expect_not() {
  local line=$1 got word
  shift
  got=$(complete_line "$line")
  for word in "$@"; do
    grep -qxF -- "$word" <<<"$got" && fail "\"$line\" offers $word (offers: ${got//$'\n'/ })"
  done
}

help_block() {  # CLI11's "Subcommands:" or "Options:" block; $1: its title
  awk -v title="$1" 'tolower($0) ~ "^" title ":$" { on = 1; next } /^[^ ]/ { on = 0 } on'
}

# Commands and options, as the binary has them.
commands=$("$docpipe" --help | help_block subcommands | awk 'NF { print $1 }')
[ -n "$commands" ] || fail "found no commands in \`docpipe --help\`"
# shellcheck disable=SC2086
expect "docpipe " $commands --help --version
expect "docpipe st" status
expect_not "docpipe st" run submit
for cmd in $commands; do
  # shellcheck disable=SC2046
  expect "docpipe $cmd --" $("$docpipe" "$cmd" --help | help_block options |
    grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
done
expect "docpipe run --log-level " debug info warn error
expect "docpipe run --durability f" fsync
expect "docpipe run --log-format " text json

# Files where a file is expected: job files for validate and submit, a config for --config.
mkdir -p "$tmp/jobs/sub"
touch "$tmp/jobs/nightly.json" "$tmp/jobs/notes.txt"
cd "$tmp/jobs" || exit 1
expect "docpipe validate " nightly.json sub
expect_not "docpipe validate " notes.txt
expect "docpipe submit --wait n" nightly.json
expect "docpipe status --config " nightly.json
expect "docpipe run --spool " sub
expect_not "docpipe run --spool " nightly.json
cd "$tmp" || exit 1

# Job ids from `status --json`: a stub daemon client answers as the real one does (the reply's
# daemon part holds ids of its own that must not be offered).
mkdir -p "$tmp/bin"
cat >"$tmp/bin/docpipe" <<'STUB'
#!/bin/sh
echo "$*" >>"${0%/*}/calls"
[ "$1 $2" = "status --json" ] || exit 2
cat <<'JSON'
{
  "daemon": {
    "cluster": {
      "id": "node-a"
    },
    "version": "0.1.0"
  },
  "jobs": [
    {
      "id": "nightly-2026-12-01",
      "state": "running"
    },
    {
      "id": "invoices.11",
      "state": "queued"
    }
  ],
  "ok": true
}
JSON
STUB
chmod +x "$tmp/bin/docpipe"
expect "$tmp/bin/docpipe cancel " nightly-2026-12-01 invoices.11
expect_not "$tmp/bin/docpipe cancel " node-a
expect "$tmp/bin/docpipe status --json ni" nightly-2026-12-01
expect_not "$tmp/bin/docpipe status --json ni" invoices.11
expect_not "$tmp/bin/docpipe cancel nightly-2026-12-01 " nightly-2026-12-01 invoices.11
# Only finished jobs can be retried: the daemon's queued and running ones are not offered.
expect_not "$tmp/bin/docpipe retry " nightly-2026-12-01 invoices.11
: >"$tmp/bin/calls"
complete_line "$tmp/bin/docpipe cancel --config /etc/x.json --spool /srv/s " >/dev/null
grep -qx -- "status --json --config /etc/x.json --spool /srv/s" "$tmp/bin/calls" ||
  fail "job ids were not asked for with the line's --config and --spool: $(cat "$tmp/bin/calls")"

# The real binary with no daemon: nothing, at once; a spool's finished jobs for status.
mkdir -p "$tmp/spool/done" "$tmp/spool/failed"
touch "$tmp/spool/done/report-a.report.json" "$tmp/spool/done/report-a.json" \
  "$tmp/spool/failed/broken-b.report.json"
start=$(date +%s%N)
got=$(complete_line "$docpipe cancel --spool $tmp/spool ")
[ -z "$got" ] || fail "cancel with no daemon offers: $got"
expect "$docpipe status --spool $tmp/spool " report-a broken-b
expect "$docpipe retry --spool $tmp/spool " report-a broken-b
expect "$docpipe retry --id again --spool $tmp/spool b" broken-b
printf '{"spool_dir": "%s"}\n' "$tmp/spool" >"$tmp/config.json"
expect "$docpipe status --config $tmp/config.json r" report-a
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
((elapsed_ms < 5000)) || fail "completion with no daemon took $elapsed_ms ms"

# A daemon that never answers: cut off by the timeout, no hang.
printf '#!/bin/sh\nexec sleep 30\n' >"$tmp/bin/stuck"
chmod +x "$tmp/bin/stuck"
start=$(date +%s%N)
got=$(complete_line "$tmp/bin/stuck cancel ")
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[ -z "$got" ] || fail "cancel with a stuck daemon offers: $got"
((elapsed_ms < 4500)) || fail "completion with a stuck daemon took $elapsed_ms ms (timeout 2 s)"

if ((failures)); then
  echo "$failures problem(s) in the bash completion" >&2
  exit 1
fi
echo "bash completion: $(wc -w <<<"$commands") commands, their options, values, files and job ids"
