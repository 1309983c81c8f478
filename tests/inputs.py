"""Random model inputs of the shapes a config expects, for the model tests."""
import torch


def random_inputs(cfg, batch=2, seed=0):
    """visual uint8 [B, t, 3, k, crop, crop] and audio MFCC [B, t_a, L, n_mfcc], from a seed."""
    g = torch.Generator().manual_seed(seed)
    visual = torch.randint(0, 256, (batch, cfg.segments, 3, cfg.frames, cfg.crop, cfg.crop),
                           dtype=torch.uint8, generator=g)
    audio = torch.randn(batch, cfg.audio_segments, cfg.audio_len, cfg.n_mfcc, generator=g)
    return visual, audio
