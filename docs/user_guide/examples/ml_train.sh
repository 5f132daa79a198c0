# Train test_model: one model per fold, on the events of its two training datasets. Everything the
# training needs (the sample files, the event chain, the per-fold event files) runs first.
law run cf.MLTraining \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default \
    --dataset hh_ggf_bbtautau_madgraph,tt_sl_powheg
