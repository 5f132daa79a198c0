# The best point's --ml-model-settings, as the scan printed them: the same training, complete
# already.
law run cf.MLTraining \
    --version v1 \
    --ml-model dnn \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default \
    --ml-model-settings epochs=1,min_epochs=0,folds=2,layers=16,learning_rate=0.01
