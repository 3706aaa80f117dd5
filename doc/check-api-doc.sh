#!/bin/sh
# Fails when Smelt-1.gir has an undocumented public symbol, parameter or
# return value (the API reference must cover everything): first what
# `gi-docgen check` finds, then (check-api-doc.py) virtual methods, their
# parameters and return values, and the fields of records, class structs
# and classes, which gi-docgen does not check.
#   check-api-doc.sh GI-DOCGEN GIR-INCLUDE-DIR SMELT-1.GIR PYTHON3 SOURCE-ROOT
set -u
failed=0
out=$("$1" check --add-include-path="$2" "$3" 2>&1)
status=$?
# gi-docgen colours its levels; match the word only
problems=$(printf '%s\n' "$out" | sed 's/\x1b\[[0-9;]*m//g' | grep -E '^(WARNING|ERROR|CRITICAL)')
if [ $status -ne 0 ] || [ -n "$problems" ]; then
  printf '%s\n' "$out" >&2
  echo "gi-docgen check: $(printf '%s\n' "$problems" | grep -c .) problem(s), exit $status" >&2
  failed=1
else
  echo "gi-docgen check: every public symbol of $(basename "$3") is documented"
fi
"$4" "$(dirname "$0")/check-api-doc.py" "$3" "$5" || failed=1
exit $failed
