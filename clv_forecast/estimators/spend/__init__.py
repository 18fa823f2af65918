"""Spend models (role ``spend``): one module per model, its name the model's ``kind``."""
