# The limit on sigma x BR(X -> HH) at 300, 500 and 1000 GeV, with param_dnn trained at these masses
# (small sizes: two folds, two epochs) and evaluated at each of them; the chain of every dataset it
# needs runs first.
law run cf.PlotLimitsVsMass \
    --version v1 \
    --inference-model resonant_inference \
    --masses 300,500,1000 \
    --ml-models "param_dnn[epochs=2,folds=2,masses=300:500:1000,training_masses=300:500:1000]"

# The interpolation check: the same network trained without 500 GeV, evaluated at all three masses.
law run cf.PlotLimitsVsMass \
    --version v1 \
    --inference-model resonant_inference \
    --masses 300,500,1000 \
    --ml-models "param_dnn[epochs=2,folds=2,masses=300:500:1000,training_masses=300:1000]"
