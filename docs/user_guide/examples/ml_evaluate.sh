# Evaluate the fold models on every file of the default dataset (hh_ggf_bbtautau_madgraph) ...
law run cf.MLEvaluation \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc

# ... and on the tt background.
law run cf.MLEvaluation \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --dataset tt_sl_powheg
