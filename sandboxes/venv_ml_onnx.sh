# Sandbox for evaluating ONNX models with onnxruntime, without TensorFlow.
export CF_VENV_NAME="ml_onnx"
export CF_VENV_REQUIREMENTS="$CF_BASE/sandboxes/ml_onnx.txt"
. "$CF_BASE/sandboxes/_setup_venv.sh" || return $?
export LAW_SANDBOX='bash::$CF_BASE/sandboxes/venv_ml_onnx.sh'
