"""Agents: pure online learners that pick threshold policies. No I/O."""
