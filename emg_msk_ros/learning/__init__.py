"""The physics-informed CNN: datasets, model, loss, training, evaluation, export (torch; the
settings and model.yaml reading in ``settings`` and ``metadata`` need none)."""
