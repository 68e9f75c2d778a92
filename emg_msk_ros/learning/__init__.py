"""The physics-informed CNN: datasets, model, loss, training, evaluation, export (torch)."""
