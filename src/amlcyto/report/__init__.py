"""One self-contained HTML page of results: ``build_report(sources, out)``.

Every figure and cell image is embedded in the file (``data:`` URIs), so the page opens
offline in any browser; galleries are filtered by plain JavaScript inside it.
"""

# Cells shown per class and outcome (predicted right, wrong): enough to see what a model gets
# right and wrong; the page counts the rest. Here, not in build.py, so that the command line
# reads it without importing PyTorch.
DEFAULT_EXAMPLES = 6
# Cells shown per patient of a MIL run, highest attention first: a whole cohort's page stays
# near 10 MB at 64 px thumbnails (189 patients x 24 cells).
DEFAULT_MIL_CELLS = 24
