"""What a model is: the spec language that describes one, the presets, model files."""
