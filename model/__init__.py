"""Networks only: 3D/2D ResNet backbones, attention blocks, VAANet, DFAN, presets and config,
losses, input normalisation, weight import, the model summary."""
