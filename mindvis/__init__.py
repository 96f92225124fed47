"""mindvis: decode images from fMRI with the MinD-Vis method (masked brain modeling + fMRI-conditioned LDM)."""

__version__ = "0.1.0"
