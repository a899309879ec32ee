#!/usr/bin/env bash
# The manual pages against what they describe (ctest "deploy: man pages ...", label deploy):
#   docpipe(1):        every command of `docpipe --help` has a section (.SS "docpipe CMD ...")
#                      that names each option of `docpipe CMD --help`; the global options too;
#   docpipe.json(5):   every key the config parser reads (the JSON keys config/*.cc asks its
#                      readers for) is a tagged item with its type and a default (or "required");
#   both:              name the binary's version in .TH; `groff -ww -z` and `man --warnings`
#                      (as lintian runs it) print nothing.
# Usage: tests/deploy/man_pages_test.sh DOCPIPE_BINARY SOURCE_DIR
set -euo pipefail
docpipe=$1
src=$2
page1=$src/deploy/man/docpipe.1
page5=$src/deploy/man/docpipe.json.5
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# The page's troff source with hyphens unescaped, so that options read as typed.
plain() { sed -e 's/\\-/-/g' "$1"; }

# CLI11's help: a "Subcommands:" (or "SUBCOMMANDS:") block of "  NAME  description" lines, and
# an "Options:" block of "  -h,--help ..." / "  --name TYPE ..." lines.
help_block() {  # $1: block title regex; stdin: help text
  awk -v title="$1" 'tolower($0) ~ "^" title ":$" { on = 1; next } /^[^ ]/ { on = 0 } on'
}
commands=$("$docpipe" --help | help_block subcommands | awk 'NF { print $1 }')
[ -n "$commands" ] || fail "found no commands in \`$docpipe --help\`"

# Lines of docpipe(1) from `.SS "docpipe CMD` up to the next .SS or .SH.
section_of() {
  plain "$page1" | awk -v cmd="$1" '
    /^\.S[HS] / { on = ($0 ~ "^\\.SS \"docpipe " cmd "( |\")") }
    on'
}
options_of() {  # long options from `docpipe ARGS --help`, --help itself left out
  "$docpipe" "$@" --help | help_block options | grep -oE -- '--[a-z][a-z0-9-]*' |
    { grep -vx -- '--help' || true; } | sort -u
}
for cmd in $commands; do
  section=$(section_of "$cmd")
  if [ -z "$section" ]; then
    fail "docpipe(1) has no section .SS \"docpipe $cmd ...\" for the command $cmd"
    continue
  fi
  for opt in $(options_of "$cmd"); do
    # An option is documented as a tagged paragraph: .TP, then .B/.BI/.BR --opt ...
    grep -qE -- "^\.(B|BI|BR) +\"?$opt( |\"|$)" <<<"$section" ||
      fail "docpipe(1): the section for \"$cmd\" does not document $opt"
  done
done
# The page read whole first: `plain | grep -q` under pipefail fails when grep stops at its match
# before sed has written the rest (SIGPIPE), as soon as the page outgrows a pipe write.
page1_text=$(plain "$page1")
for opt in $(options_of) --help; do
  grep -qE -- "^\.(B|BI|BR) +(-h +\", \" +)?\"?$opt( |\"|$)" <<<"$page1_text" ||
    fail "docpipe(1) does not document the global option $opt"
done

# Keys: the string literal that config/*.cc hands a JSON reader or a key helper as the key,
# e.g. r.integer("workers", ...), thread_count(r, "workers"), path(t, "ca"), r.get("cluster").
keys=$(cat "$src"/config/*.cc | grep -oE '\(\s*([A-Za-z_]+,\s*)?"[a-z][a-z0-9_]*"' |
  grep -oE '"[a-z][a-z0-9_]*"' | tr -d '"' | sort -u) || true
# The extraction must keep finding the keys everyone knows, or it has silently stopped working.
for known in spool_dir workers commands argv pool breaker cluster nats tls; do
  grep -qx "$known" <<<"$keys" || fail "no key \"$known\" found in config/*.cc: the extraction" \
    "in this test no longer matches the parser's code"
done
# Tagged items: the line after each .TP.
tags=$(plain "$page5" | awk 'previous == ".TP" { print } { previous = $0 }')
for key in $keys; do
  line=$(grep -E "^\.BR? +$key( |$)" <<<"$tags" | head -1) || true
  if [ -z "$line" ]; then
    fail "docpipe.json(5) does not document the config key $key"
  elif ! grep -qE '\(.*(default|required)' <<<"$line"; then
    fail "docpipe.json(5): $key has no type and default: $line"
  fi
done

version=$("$docpipe" --version | awk '{ print $NF }')
for page in "$page1" "$page5"; do
  grep -q "^\.TH .* \"docpipe $version\" " "$page" ||
    fail "$page: its .TH line does not name \"docpipe $version\" (\`docpipe --version\`)"
  out=$(groff -ww -z -man "$page" 2>&1) || fail "groff -ww -z -man $page failed: $out"
  [ -z "$out" ] || fail "groff -ww -z -man $page warns:"$'\n'"$out"
  # What lintian's manpages check runs.
  out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" \
    2>&1 >/dev/null) || fail "man --warnings $page failed: $out"
  [ -z "$out" ] || fail "man --warnings $page warns:"$'\n'"$out"
done

if ((failures)); then
  echo "$failures problem(s) in the manual pages" >&2
  exit 1
fi
echo "man pages: $(wc -w <<<"$commands") commands and $(wc -w <<<"$keys") config keys documented;" \
  "groff and man print no warnings"
