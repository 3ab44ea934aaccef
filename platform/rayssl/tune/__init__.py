"""Ray Tune sweeps over fine-tuning settings and label budgets."""
