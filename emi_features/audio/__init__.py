"""The audio path: decoding any media to 16 kHz mono, and the speech backbones."""
