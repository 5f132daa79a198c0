#!/usr/bin/env bash
# Builds one venv; called by _setup_venv.sh while it holds the venv's lock.
# Usage: _build_venv.sh VENV_DIR CONTENT_HASH REQUIREMENT_FILE [REQUIREMENT_FILE ...]
set -u

venv_dir="$1"
content_hash="$2"
shift 2

# another process may have finished the same build while we waited for the lock
if [ "${CF_REINSTALL_SOFTWARE:-0}" != "1" ] && [ "$(cat "$venv_dir/cf_venv.hash" 2>/dev/null)" = "$content_hash" ]; then
    exit 0
fi

python_exe="${CF_PYTHON:-python3}"
if ! "$python_exe" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    >&2 echo "cf: Python >= 3.10 is required to build '$venv_dir', but '$python_exe' is $("$python_exe" --version 2>&1)"
    exit 1
fi

# the interpreter the venvs are made from, not a venv's own: after a requirement change, setup.sh runs in a shell
# where the old venv is active, and its python3 vanishes with the rm below
python_exe="$("$python_exe" -c 'import sys; print(getattr(sys, "_base_executable", None) or sys.executable)')" || exit 1

echo "cf: building venv $venv_dir (this happens once per requirement change)"
rm -rf "$venv_dir"
if ! "$python_exe" -m venv "$venv_dir"; then
    >&2 echo "cf: '$python_exe -m venv' failed for $venv_dir"
    rm -rf "$venv_dir"
    exit 1
fi

pip_args=()
for req_file in "$@"; do
    pip_args+=(-r "$req_file")
done
if ! "$venv_dir/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off "${pip_args[@]}"; then
    >&2 echo "cf: pip could not install the requirements ($*) into $venv_dir; the partial venv was removed"
    rm -rf "$venv_dir"
    exit 1
fi

# written last: its presence with the right hash is what marks the venv as complete
echo "$content_hash" > "$venv_dir/cf_venv.hash.tmp" && mv "$venv_dir/cf_venv.hash.tmp" "$venv_dir/cf_venv.hash"
echo "cf: venv $venv_dir is ready"
