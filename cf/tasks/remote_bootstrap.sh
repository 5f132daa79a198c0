#!/usr/bin/env bash
# Bootstrap file of a cf batch job (Slurm or HTCondor), sourced by law's job script before it runs the
# task branches of the job.
#
# law renders the {{...}} placeholders inside the job (JobInputFile(..., share=True, render_job=True)) with the
# values of the submitting environment (cf/tasks/remote.py, BOOTSTRAP_VARIABLES), so the job uses exactly the
# submitter's checkout, software, store and job directory. This needs a file system that the worker nodes
# share with the submitting machine at the same paths; nothing is copied. The job then sources the project's
# setup.sh like an interactive shell would, and `law run` enters the task's sandbox inside the job as usual.

cf_job_bootstrap() {
    export CF_BASE="{{cf_base}}"
    if [ -z "${CF_BASE}" ] || [ ! -f "${CF_BASE}/setup.sh" ]; then
        >&2 echo "cf job: '${CF_BASE}/setup.sh' not found on $(hostname): batch jobs need the checkout on a file system shared with the submitting machine, at the same path"
        return 1
    fi

    # only variables that were set when the jobs were submitted; setup.sh keeps preset values
    if [ -n "{{cf_data}}" ]; then export CF_DATA="{{cf_data}}"; fi
    if [ -n "{{cf_software_base}}" ]; then export CF_SOFTWARE_BASE="{{cf_software_base}}"; fi
    if [ -n "{{cf_venv_base}}" ]; then export CF_VENV_BASE="{{cf_venv_base}}"; fi
    if [ -n "{{cf_store_local}}" ]; then export CF_STORE_LOCAL="{{cf_store_local}}"; fi
    if [ -n "{{cf_job_base}}" ]; then export CF_JOB_BASE="{{cf_job_base}}"; fi
    if [ -n "{{cf_python}}" ]; then export CF_PYTHON="{{cf_python}}"; fi
    if [ -n "{{law_home}}" ]; then export LAW_HOME="{{law_home}}"; fi
    if [ -n "{{law_config_file}}" ]; then export LAW_CONFIG_FILE="{{law_config_file}}"; fi

    # shellcheck disable=SC1091
    source "${CF_BASE}/setup.sh" "" || {
        >&2 echo "cf job: sourcing ${CF_BASE}/setup.sh failed (see above)"
        return 1
    }
    echo "cf job: set up ${CF_BASE} on $(hostname): store ${CF_STORE_LOCAL}, jobs ${CF_JOB_BASE}"
}

cf_job_bootstrap
