"""`hil metahrl`: the Meta-HRL experiments, their report and bench figures."""
