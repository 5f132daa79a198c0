# Train dnn at the four points of a grid, 8 or 16 hidden units times a learning rate of 0.01 or 0.02
# (tiny trainings: one epoch, two folds), and tabulate each fold's validation metrics. The points
# share the prepared events; --workers 4 would train four folds at a time.
law run cf.MLTrainingScan \
    --version v1 \
    --ml-model dnn \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --selector default \
    --ml-model-settings epochs=1,min_epochs=0,folds=2 \
    --scan "layers=8,16;learning_rate=0.01,0.02"
