"""Curation: the normal cells inside leukemia patients, found and reported (``curate``)."""
