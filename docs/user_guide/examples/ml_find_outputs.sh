# The parquet files with the scores, one per input file (the commands above plus --print-output 0).
law run cf.MLEvaluation \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --print-output 0

law run cf.MLEvaluation \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --dataset tt_sl_powheg \
    --print-output 0
