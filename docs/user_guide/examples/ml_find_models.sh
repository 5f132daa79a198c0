# The same parameters plus --print-output 0 list the trained models (one directory per fold).
law run cf.MLTraining \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default \
    --dataset hh_ggf_bbtautau_madgraph,tt_sl_powheg \
    --print-output 0
