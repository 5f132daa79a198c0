# Sandbox for training (and evaluating) Keras models with TensorFlow on the CPU.
# Tasks use it as "bash::$CF_BASE/sandboxes/venv_ml_tf.sh"; `cf_sandbox venv_ml_tf` opens a shell in it.
export CF_VENV_NAME="ml_tf_training"
export CF_VENV_REQUIREMENTS="$CF_BASE/sandboxes/ml_tf_training.txt"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
. "$CF_BASE/sandboxes/_setup_venv.sh" || return $?
export LAW_SANDBOX='bash::$CF_BASE/sandboxes/venv_ml_tf.sh'
