"""amlcyto: classify acute myeloid leukemia from images of single white blood cells."""

__version__ = "0.1.0"
