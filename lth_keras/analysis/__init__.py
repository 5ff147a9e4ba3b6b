"""Analyses of finished experiments: the paper's figures and instability."""
