"""Low-complexity acoustic scene classification (DCASE 2023 Task 1; Pham et al., arXiv 2305.09463).

A large multi-spectrogram teacher (log-Mel, Gammatone, CQT; one residual CNN per spectrogram, late
fusion of probabilities) is distilled into a student under the DCASE limits (128 K parameters,
30 M MACs per 1-second clip) through its embeddings. Command line: `python -m asc --help`.
"""
