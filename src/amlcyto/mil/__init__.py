"""Patient-level diagnosis: cell features (``embed``), attention-based multiple-instance
learning over each patient's cells (``mil train``), and the cells that drove each call."""
