# Train the two fold models of the ported model, then score a dataset
law run cf.MLTraining \
    --version v1 \
    --ml-model ported_model
law run cf.MLEvaluation \
    --version v1 \
    --ml-model ported_model \
    --dataset tt_sl_powheg
