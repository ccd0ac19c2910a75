#!/usr/bin/env bash
# The man pages and the bash completion against the binaries they describe: every subcommand and
# option `--help` lists is in the man page, the pages format without warnings, and completion
# offers exactly what `--help` lists, plus the caller's app names from a real prewarmd.
# Usage: docs.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "$0")/../lib/daemon.sh"
command -v groff >/dev/null || fail "no groff (.ci/install-deps installs groff-base)"

subcommands() { "$P" --help | sed -n '/^Subcommands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p'; }
options() { "$@" --help | grep -o -- '--[a-z][a-z-]*' | sort -u; }
# In roff source a dash is written \- ; the text man renders is what a reader searches.
rendered() { LC_ALL=C.UTF-8 groff -man -Tascii -P -cbou -rLL=200n "$SRC/man/$1" 2>/dev/null; }

step "each page formats without warnings"
for page in prewarm.1 prewarmd.8 prewarm@.service.8; do
  out=$(LC_ALL=C.UTF-8 groff -man -ww -z "$SRC/man/$page" 2>&1) || fail "groff failed on $page: $out"
  [ -z "$out" ] || fail "groff warns on $page: $out"
done

step "every unit's Documentation= names pages that exist here, and nothing else"
for unit in "$SRC"/units/*.service "$SRC"/units/*.socket; do
  docs=$(sed -n 's/^Documentation=//p' "$unit")
  [ -n "$docs" ] || fail "$(basename "$unit") has no Documentation="
  for d in $docs; do
    case "$d" in
      man:*) name=${d#man:}; file="$SRC/man/${name%(*}.${name##*(}"; file=${file%)}
             [ -f "$file" ] || fail "$(basename "$unit"): $d has no page ($file)" ;;
      *) fail "$(basename "$unit"): $d is not a page shipped with prewarm" ;;
    esac
  done
done

step "prewarm(1) names every subcommand and every option of each"
page=$(rendered prewarm.1)
entries=$(echo "$page" | sed -n '/^COMMANDS/,/^OPTIONS/s/^       \([a-z][a-z-]*\).*/\1/p')  # tags at indent 7
[ -n "$(subcommands)" ] || fail "no subcommands read from prewarm --help"
for cmd in $(subcommands); do
  echo "$entries" | has -x "$cmd" || fail "prewarm.1 has no entry for '$cmd' under COMMANDS"
  for opt in $(options "$P" "$cmd"); do
    echo "$page" | has -e "$opt\b" || fail "prewarm.1 does not mention '$cmd $opt'"
  done
done

step "prewarmd(8) names every option of prewarmd"
page=$(rendered prewarmd.8)
for opt in $(options "$BIN/prewarmd"); do
  echo "$page" | has -e "$opt\b" || fail "prewarmd.8 does not mention '$opt'"
done

step "completion: subcommands and options are those of --help"
. "$SRC/completions/prewarm"
complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _prewarm; printf '%s\n' "${COMPREPLY[@]}" | sort; }
got=$(complete_words "$P" "")
want=$( (subcommands; echo --help) | sort)
[ "$got" = "$want" ] || fail "subcommand completion: got $(echo $got), want $(echo $want)"
for cmd in $(subcommands); do
  got=$(complete_words "$P" "$cmd" --)
  want=$(options "$P" "$cmd")
  [ "$got" = "$want" ] || fail "option completion of $cmd: got $(echo $got), want $(echo $want)"
done
[ -z "$(complete_words "$P" register app -- /bin/ls --)" ] || fail "completion reached into the app's own command line"

step "completion: app names come from the caller's prewarmd"
start_daemon
cleanup end_daemon
(cd "$SCRATCH" && "$P" register alpha -- /bin/true && "$P" register beta -- /bin/true) >/dev/null
got=$(complete_words "$P" run "")
[ "$got" = "$(printf 'alpha\nbeta')" ] || fail "app completion of 'run': got $(echo $got)"
got=$(complete_words "$P" stats al)
[ "$got" = alpha ] || fail "app completion of 'stats al': got $(echo $got)"
stop_daemon
[ -z "$(complete_words "$P" run "")" ] || fail "completion with prewarmd down offered names"
echo "docs: ok"
