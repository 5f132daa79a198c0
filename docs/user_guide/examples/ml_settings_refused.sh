# A setting that the model refuses stops the command before any task runs, with a one-line error.
law run cf.MLTraining \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default \
    --dataset hh_ggf_bbtautau_madgraph,tt_sl_powheg \
    --ml-model-settings folds=1
