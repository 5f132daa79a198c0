#!/usr/bin/env bash
# Sets up this analysis: `source setup.sh` (bash or zsh, from any directory).
# On first use it builds the base software venv from sandboxes/cf.txt; afterwards it only exports the
# environment and activates the venv (well under two seconds, no network).
# Every CF_* variable below can be preset to override its default.

if [ -n "${ZSH_VERSION:-}" ]; then
    case "${ZSH_EVAL_CONTEXT:-}" in
        *file*) ;;
        *) echo "setup.sh must be sourced, not executed: run 'source setup.sh'" >&2; exit 1 ;;
    esac
elif [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "setup.sh must be sourced, not executed: run 'source setup.sh'" >&2
    exit 1
fi

cf_setup() {
    local this_file
    if [ -n "${ZSH_VERSION:-}" ]; then
        eval 'this_file="${(%):-%x}"'
    else
        this_file="${BASH_SOURCE[0]}"
    fi

    # the python that builds the venvs (CF_PYTHON, as in _build_venv.sh), so that setting CF_PYTHON is enough
    if ! "${CF_PYTHON:-python3}" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        >&2 echo "cf: Python >= 3.10 is required, found '$("${CF_PYTHON:-python3}" --version 2>&1)'; set CF_PYTHON or put a newer python3 on PATH"
        return 1
    fi

    export CF_BASE="$(cd "$(dirname "$this_file")" && pwd)"
    export CF_DATA="${CF_DATA:-$CF_BASE/data}"
    export CF_SOFTWARE_BASE="${CF_SOFTWARE_BASE:-$CF_DATA/software}"
    export CF_VENV_BASE="${CF_VENV_BASE:-$CF_SOFTWARE_BASE/venvs}"
    export CF_STORE_LOCAL="${CF_STORE_LOCAL:-$CF_DATA/store}"
    export CF_JOB_BASE="${CF_JOB_BASE:-$CF_DATA/jobs}"
    export LAW_HOME="${LAW_HOME:-$CF_BASE/.law}"
    export LAW_CONFIG_FILE="${LAW_CONFIG_FILE:-$CF_BASE/law.cfg}"
    # pyarrow's buffers from glibc's malloc, whose freed memory the tasks keep for their next chunk
    # (cf.tasks.base.reuse_freed_memory), instead of mimalloc's separate pages: a chain's peak memory -25%
    export ARROW_DEFAULT_MEMORY_POOL="${ARROW_DEFAULT_MEMORY_POOL:-system}"
    # the checkout goes on PYTHONPATH rather than being pip-installed: the analysis packages that law.cfg names are
    # no part of the cf package (pyproject.toml), and PYTHONPATH reaches the sandbox venvs and batch jobs too; a fork
    # that installs cf as a package instead (`pip install cf-template`) removes its cf/ and keeps this line
    case ":${PYTHONPATH:-}:" in
        *":$CF_BASE:"*) ;;
        *) export PYTHONPATH="$CF_BASE${PYTHONPATH:+:$PYTHONPATH}" ;;
    esac
    case ":$PATH:" in
        *":$CF_BASE/bin:"*) ;;
        *) export PATH="$CF_BASE/bin:$PATH" ;;
    esac

    . "$CF_BASE/sandboxes/cf.sh" || {
        >&2 echo "cf: setting up the base software failed (see above)"
        return 1
    }

    # refresh law's task index only when a task module or law.cfg is newer than it
    local index_file="$LAW_HOME/index"
    if [ ! -f "$index_file" ] || [ -n "$(find "$CF_BASE/cf/tasks" "$LAW_CONFIG_FILE" -newer "$index_file" -print -quit 2>/dev/null)" ]; then
        mkdir -p "$LAW_HOME"
        law index -q || {
            >&2 echo "cf: 'law index' failed: a task module listed in $LAW_CONFIG_FILE does not import"
            return 1
        }
    fi
    return 0
}

cf_setup "$@"
