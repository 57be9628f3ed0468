"""Camera to verdict: frame sources, decoders and the scan loop."""
