"""srsEPC, srsENB and srsUE: their config files rendered from templates, their processes."""
