"""Networks (3D/2D ResNets, attention blocks, VAANet, DFAN), losses, weight import, trainer."""
