"""The training side: run configuration, the training loop, evaluation, metrics, checkpoints,
ablation, the VE-8 protocol, distributed set-up, and the streaming loader that feeds them."""
