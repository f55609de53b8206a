"""What the poster reported: four tasks, control against one subtype, each with its preset.

Its test sets held 800 control and 800 subtype images per task, split by image (so one
patient's cells sat in both training and test data).
"""

from __future__ import annotations

# subtype -> registered model preset
POSTER_TASKS = {
    "PML_RARA": "poster_pml_rara",
    "RUNX1_RUNX1T1": "poster_runx1_runx1t1",
    "CBFB_MYH11": "poster_cbfb_myh11",
    "NPM1": "poster_npm1",
}

# subtype -> the learning rate the poster's Keras Tuner chose for that task's model (Adam, no
# schedule). `reproduce-poster` trains with these unless given --lr; `amlcyto train` uses each
# preset's own default, 1e-4 (see amlcyto.models.cnn).
POSTER_LEARNING_RATES = {"PML_RARA": 1e-5, "RUNX1_RUNX1T1": 1e-5, "CBFB_MYH11": 1e-4, "NPM1": 1e-4}

# subtype -> {class: (precision, recall, f1)}, plus accuracy: the poster's published table.
POSTER_RESULTS = {
    "PML_RARA": {"control": (0.88, 0.91, 0.90), "subtype": (0.91, 0.88, 0.90), "accuracy": 0.90},
    "RUNX1_RUNX1T1": {
        "control": (0.94, 0.88, 0.91),
        "subtype": (0.89, 0.94, 0.91),
        "accuracy": 0.91,
    },
    "CBFB_MYH11": {"control": (0.79, 0.93, 0.86), "subtype": (0.92, 0.75, 0.83), "accuracy": 0.84},
    "NPM1": {"control": (0.87, 0.90, 0.89), "subtype": (0.90, 0.86, 0.88), "accuracy": 0.88},
}
