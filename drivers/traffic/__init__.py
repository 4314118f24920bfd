"""Traffic through the LTE link: the round's demand as real flows, measured where they arrive."""
