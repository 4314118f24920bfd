"""The emulated vBS and meter: the same wire formats as the real ones, backed by a pure model."""
