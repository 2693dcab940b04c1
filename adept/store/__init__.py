"""What runs leave on disk: run directories (config, metrics, checkpoints, summary, locks and
exact resume) and the content-addressed artifact cache of pre-trained models and generated data."""
