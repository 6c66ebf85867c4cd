"""cloudcounter: a remote video counter for banks."""

__version__ = "0.1.0"
