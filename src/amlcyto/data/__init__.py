"""Files in, records out: discovery, decoding, validation, manifests, splits, audits, datasets."""
