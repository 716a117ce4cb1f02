"""Training code for Cadenza models (one module per model)."""
