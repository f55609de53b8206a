"""The split's defaults, in a module without numpy or pandas: the command line reads them for
its help texts without loading the splits themselves."""

DEFAULT_TEST = 0.2  # share of each class's images held out for testing
DEFAULT_VAL = 0.1  # share for validation (picks the epoch kept)
DEFAULT_FOLDS = 5  # cross-validation folds made from a manifest
