# The ported inference model: datacards and the pyhf workspace of the default config
law run cf.CreatePyhfWorkspace \
    --version v1 \
    --inference-model porting_inference
