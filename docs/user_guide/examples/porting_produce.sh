# The ported producer on one dataset of the default config
law run cf.ProduceColumns \
    --version v1 \
    --dataset tt_sl_powheg \
    --producers porting_features
