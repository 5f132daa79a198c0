# Sandbox for training (and evaluating) Keras models with TensorFlow on the CPU.
# Tasks use it as "bash::$CF_BASE/sandboxes/venv_ml_tf.sh"; `cf_sandbox venv_ml_tf` opens a shell in it.
export CF_VENV_NAME="ml_tf_training"
export CF_VENV_REQUIREMENTS="$CF_BASE/sandboxes/ml_tf_training.txt"
# quiet unless CF_VERBOSE=1: TensorFlow's C++ log level (2: warnings and errors only)
if [ "${CF_VERBOSE:-0}" = "1" ]; then export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-0}"; fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# oneDNN's custom CPU kernels are off: their results depend on the CPU's instruction set (trainings would differ
# between machines), and their start-up notice cannot be silenced otherwise; TF_ENABLE_ONEDNN_OPTS=1 turns them on
export TF_ENABLE_ONEDNN_OPTS="${TF_ENABLE_ONEDNN_OPTS:-0}"
. "$CF_BASE/sandboxes/_setup_venv.sh" || return $?
export LAW_SANDBOX='bash::$CF_BASE/sandboxes/venv_ml_tf.sh'
