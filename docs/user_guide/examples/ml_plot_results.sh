# ROC curves, confusion matrix and score distributions of the three fold models ...
law run cf.PlotMLResults \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default

# ... and the files it wrote.
law run cf.PlotMLResults \
    --version v1 \
    --ml-model test_model \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default \
    --print-output 0
