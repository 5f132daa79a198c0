# Sandbox of the docs' browser check: selenium, which drives the system's headless Chromium (Debian's chromium and
# chromium-driver packages). `cf_sandbox venv_docs_browser` opens a shell in it.
export CF_VENV_NAME="docs_browser"
export CF_VENV_REQUIREMENTS="$CF_BASE/sandboxes/docs_browser.txt"
. "$CF_BASE/sandboxes/_setup_venv.sh" || return $?
