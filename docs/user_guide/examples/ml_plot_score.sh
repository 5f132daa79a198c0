# Histograms of every variable of the config and of the test_model scores, per file of the default
# dataset (hh_ggf_bbtautau_madgraph) ...
law run cf.CreateHistograms \
    --version v1 \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --ml-models test_model

# ... and the HH score of the signal and the tt background in one plot.
law run cf.PlotVariables1D \
    --version v1 \
    --config run2_2017_nano_uhh_v11_limited \
    --calibrators skip_jecunc \
    --ml-models test_model \
    --variables test_model.score_hh \
    --datasets hh_ggf_bbtautau_madgraph,tt_sl_powheg
