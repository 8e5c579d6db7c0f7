"""Audio plumbing shared by the pipeline and the transports: PCM, G.711, resampling."""
