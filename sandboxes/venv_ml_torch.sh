# Sandbox for training PyTorch models on the CPU.
# Tasks use it as "bash::$CF_BASE/sandboxes/venv_ml_torch.sh";
# `cf_sandbox venv_ml_torch` opens a shell in it.
export CF_VENV_NAME="ml_torch"
export CF_VENV_REQUIREMENTS="$CF_BASE/sandboxes/ml_torch.txt"
. "$CF_BASE/sandboxes/_setup_venv.sh" || return $?
export LAW_SANDBOX='bash::$CF_BASE/sandboxes/venv_ml_torch.sh'
