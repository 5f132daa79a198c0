# Sourced (bash or zsh) by a sandbox file that has set
#   CF_VENV_NAME          the venv's name, e.g. "ml_tf_training"
#   CF_VENV_REQUIREMENTS  comma-separated requirement files, each starting with "# version N"
# Builds $CF_VENV_BASE/$CF_VENV_NAME when it is missing, when any requirement file (``-r`` includes too)
# changed, or when CF_REINSTALL_SOFTWARE=1, then activates it. The build holds a lock, so concurrent
# tasks never build the same venv at once. A warm call only hashes a few small files.

_cf_requirement_tree() {
    # print the given requirement file and, recursively, every file it includes with -r
    local req_file="$1"
    local req_dir include
    if [ ! -f "$req_file" ]; then
        >&2 echo "cf: requirement file '$req_file' does not exist"
        return 1
    fi
    echo "$req_file"
    req_dir="$(cd "$(dirname "$req_file")" && pwd)"
    sed -n 's/^[[:space:]]*\(-r\|--requirement\)[[:space:]=]*\([^[:space:]]*\).*/\2/p' "$req_file" | while read -r include; do
        case "$include" in
            /*) _cf_requirement_tree "$include" || return 1 ;;
            *) _cf_requirement_tree "$req_dir/$include" || return 1 ;;
        esac
    done
}

_cf_setup_venv() {
    if [ -z "${CF_VENV_NAME:-}" ] || [ -z "${CF_VENV_REQUIREMENTS:-}" ]; then
        >&2 echo "cf: CF_VENV_NAME and CF_VENV_REQUIREMENTS must be set before sourcing _setup_venv.sh"
        return 1
    fi
    if [ -z "${CF_VENV_BASE:-}" ] || [ -z "${CF_BASE:-}" ]; then
        >&2 echo "cf: CF_BASE and CF_VENV_BASE are not set, source setup.sh first"
        return 1
    fi

    local venv_dir="$CF_VENV_BASE/$CF_VENV_NAME"
    local all_files req_file first_line content_hash
    all_files="$(echo "$CF_VENV_REQUIREMENTS" | tr ',' '\n' | while read -r req_file; do
        # an empty item (trailing comma) is skipped; a missing file fails the whole list, not only the last one
        [ -z "$req_file" ] || _cf_requirement_tree "$req_file" || exit 1
    done)" || return 1
    [ -n "$all_files" ] || { >&2 echo "cf: no requirement files in CF_VENV_REQUIREMENTS"; return 1; }

    # every file needs a version line, so that a human-visible version bump always means a rebuild
    echo "$all_files" | while read -r req_file; do
        first_line="$(head -n 1 "$req_file")"
        if ! echo "$first_line" | grep -Eq '^# version [0-9]+[[:space:]]*$'; then
            >&2 echo "cf: requirement file '$req_file' must start with a '# version N' line, found '$first_line'"
            return 1
        fi
    done || return 1
    content_hash="$(echo "$all_files" | while read -r req_file; do cat "$req_file"; done | sha256sum | cut -c1-16)"

    if [ "${CF_REINSTALL_SOFTWARE:-0}" = "1" ] || [ "$(cat "$venv_dir/cf_venv.hash" 2>/dev/null)" != "$content_hash" ]; then
        mkdir -p "$CF_VENV_BASE" || return 1
        flock "$CF_VENV_BASE/.$CF_VENV_NAME.lock" bash "$CF_BASE/sandboxes/_build_venv.sh" \
            "$venv_dir" "$content_hash" $(echo "$CF_VENV_REQUIREMENTS" | tr ',' ' ') || return 1
    fi

    export VIRTUAL_ENV="$venv_dir"
    case ":$PATH:" in
        *":$venv_dir/bin:"*) ;;
        *) export PATH="$venv_dir/bin:$PATH" ;;
    esac
    unset PYTHONHOME
    return 0
}

_cf_setup_venv
