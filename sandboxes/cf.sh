# The base sandbox: the software that `source setup.sh` installs and activates (bash or zsh).
export CF_VENV_NAME="cf"
export CF_VENV_REQUIREMENTS="$CF_BASE/sandboxes/cf.txt"
. "$CF_BASE/sandboxes/_setup_venv.sh"
