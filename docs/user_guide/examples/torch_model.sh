# Train torch_dnn's fold models in the torch sandbox (tiny settings for a quick look; without
# --ml-model-settings, the defaults of ml/dnn.py: 3 folds, up to 40 epochs, two layers of 64) ...
law run cf.MLTraining \
    --version v1 \
    --ml-model torch_dnn \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default \
    --ml-model-settings folds=2,epochs=2,layers=8:8

# ... score the HH events with ONNX Runtime in the base environment ...
law run cf.MLEvaluation \
    --version v1 \
    --ml-model torch_dnn \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --ml-model-settings folds=2,epochs=2,layers=8:8

# ... and plot ROC curves, confusion matrix, scores and losses (it evaluates every training
# dataset).
law run cf.PlotMLResults \
    --version v1 \
    --ml-model torch_dnn \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default \
    --ml-model-settings folds=2,epochs=2,layers=8:8
