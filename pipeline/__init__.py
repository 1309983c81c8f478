"""ETL and the on-disk format: dataset layouts and splits, ffmpeg decode, MFCC, shards."""
