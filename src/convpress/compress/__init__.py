"""Compression transforms applied in place to any ``nn.Module``: pruning, weight sharing, retraining."""
