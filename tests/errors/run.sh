#!/bin/sh
# run.sh — golden diagnostics: every NN-name.tc here is a malformed program;
# `tensorc check NN-name.tc` must exit with status 1, print nothing on
# stdout, and print exactly NN-name.err on stderr.
#
#   sh tests/errors/run.sh build/tensorc            check every program
#   UPDATE=1 sh tests/errors/run.sh build/tensorc   rewrite the .err files
#
# Programs run from this directory, so messages name them as NN-name.tc.
set -u
if [ $# -ne 1 ]; then
  echo "usage: sh tests/errors/run.sh PATH/TO/tensorc" >&2
  exit 2
fi
case "$1" in
  /*) bin=$1 ;;
  *) bin=$(pwd)/$1 ;;
esac
if [ ! -x "$bin" ]; then
  echo "run.sh: no executable '$1'" >&2
  exit 2
fi
cd "$(dirname "$0")" || exit 2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc-errors.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
passed=0
failed=0
for tc in [0-9]*.tc; do
  name=${tc%.tc}
  "$bin" check "$tc" >"$tmp/out" 2>"$tmp/err"
  status=$?
  if [ "${UPDATE:-}" = 1 ] && [ $status -eq 1 ]; then
    cp "$tmp/err" "$name.err"
  fi
  problem=
  if [ $status -ne 1 ]; then
    problem="exit status $status, expected 1"
  elif [ -s "$tmp/out" ]; then
    problem="unexpected output on stdout"
  elif [ ! -f "$name.err" ]; then
    problem="no $name.err (generate it with UPDATE=1)"
  elif ! diff -u "$name.err" "$tmp/err" >"$tmp/diff"; then
    problem="diagnostic differs from $name.err:"
  fi
  if [ -z "$problem" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $tc: $problem"
    case "$problem" in
      *differs*) cat "$tmp/diff" ;;
      *) sed 's/^/  | /' "$tmp/err" ;;
    esac
  fi
done
echo "errors: $passed passed, $failed failed"
[ $failed -eq 0 ]
