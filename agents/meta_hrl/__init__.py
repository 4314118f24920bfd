"""Meta-HRL: a two-level DDPG scheduler for O-RAN slicing, meta-learned across DUs (MAML)."""
