"""The audit's settings, in a module without numpy or pandas: the command line reads them for
its option defaults and help texts without loading the audit itself."""

HASH_SIZE = 16  # dHash grid: 16 x 16 = 256 bits
HASH_BITS = HASH_SIZE * HASH_SIZE
# Most bits (of 256) two files may differ in and still count as near-duplicates. Measured on
# the 14.5k PBC images: JPEG re-encoding (quality 30-95), +10% brightness or +20% contrast
# change 0-19 bits, a 2-pixel crop 15-34; PBC's two same-cell pairs (shifted by 1-2 pixels and
# re-encoded) differ in 17 and 27 bits, while the closest two distinct cells differ in 60 and
# 99.9% of cells are at least 64 bits from any other.
DEFAULT_MAX_DISTANCE = 32
