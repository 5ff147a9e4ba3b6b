"""An experiment directory on disk: its layout, atomic writes, checked reads, summaries, resume and locks.

No Keras and no TensorFlow: the figures and every reader use it as it is.
"""
