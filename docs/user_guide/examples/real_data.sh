# The chain on a real NanoAOD v12 file (fetched on first use), then test_model trained on the
# config's embedded sample and evaluated on the real dataset
law run cf.ProduceColumns \
    --version v1 \
    --config run3_2022_preee_nano_v12_limited \
    --dataset tt_sl_nanov12
law run cf.MLTraining \
    --version v1 \
    --ml-model test_model \
    --config run3_2022_preee_nano_v12_limited
law run cf.MLEvaluation \
    --version v1 \
    --ml-model test_model \
    --config run3_2022_preee_nano_v12_limited \
    --dataset tt_sl_nanov12
