# The input features of dnn's training events, per class and fold; no training needed ...
law run cf.PlotMLInputs \
    --version v1 \
    --ml-model dnn

# ... and how much each feature matters to the trained fold models, on the events they did not see.
law run cf.PlotMLImportance \
    --version v1 \
    --ml-model dnn
