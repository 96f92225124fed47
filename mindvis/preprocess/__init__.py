"""Pure numpy preprocessing: normalisation, averaging of repeats, windowing (arrays in, arrays out)."""
