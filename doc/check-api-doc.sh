#!/bin/sh
# Fails when gi-docgen finds an undocumented public symbol, parameter or
# return value in Smelt-1.gir (the API reference must cover everything).
#   check-api-doc.sh GI-DOCGEN GIR-INCLUDE-DIR SMELT-1.GIR
set -u
out=$("$1" check --add-include-path="$2" "$3" 2>&1)
status=$?
# gi-docgen colours its levels; match the word only
problems=$(printf '%s\n' "$out" | sed 's/\x1b\[[0-9;]*m//g' | grep -E '^(WARNING|ERROR|CRITICAL)')
if [ $status -ne 0 ] || [ -n "$problems" ]; then
  printf '%s\n' "$out" >&2
  echo "gi-docgen check: $(printf '%s\n' "$problems" | grep -c .) problem(s), exit $status" >&2
  exit 1
fi
echo "gi-docgen check: every public symbol of $(basename "$3") is documented"
