"""`hil compare`: agents run online against the same testbed, seed by seed, and compared in
pairs (the same seed, the same traffic and channels)."""
