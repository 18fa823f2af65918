"""Purchase models (role ``purchases``): one module per model, its name the model's ``kind``."""
