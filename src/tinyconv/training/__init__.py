"""Making a model learn: optimizers, the training loop, evaluation, checkpoints."""
