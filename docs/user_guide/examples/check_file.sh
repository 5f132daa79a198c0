# Which columns the config's calibrators and selector read, and which of them the file lacks
cf_check_file \
    --config run3_2024_nano_v15_limited \
    $CF_DATA/coffea_samples/nano_tt_v15.root
