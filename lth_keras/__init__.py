"""lth_keras: the Lottery Ticket Hypothesis for Keras 3."""

__version__ = "0.1.0"
