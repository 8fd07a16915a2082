# cli_lib.sh: the checks the CLI test scripts share (sourced; needs $T, a scratch folder, and a
# variable fail=0 that the checks set to 1).
check() { # check DESCRIPTION EXPECTED_RC CMD...; stdout in $T/out, stderr in $T/err
  local what=$1 want=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" != "$want" ]; then
    echo "FAIL: $what: exit $rc, expected $want"; sed 's/^/  | /' "$T/err" | head -5; fail=1
  fi
}
expect_err() { # expect_err DESCRIPTION TEXT: stderr is one line containing TEXT
  local n; n=$(wc -l <"$T/err")
  if ! grep -qF -- "$2" "$T/err" || [ "$n" != 1 ]; then
    echo "FAIL: $1: stderr should be one line containing '$2', got:"; sed 's/^/  | /' "$T/err"; fail=1
  fi
}
expect_out() { # expect_out DESCRIPTION TEXT: stdout contains TEXT
  grep -qF -- "$2" "$T/out" || { echo "FAIL: $1: no '$2' in:"; sed 's/^/  | /' "$T/out" | head -20; fail=1; }
}
