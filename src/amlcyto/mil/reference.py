"""What SCEMILA (Hehr et al. 2023, PLOS Digital Health) reported on the target cohort, printed
beside amlcyto's own patient-level results.

SCEMILA embeds every cell with a single-cell model, pools a patient's cells with attention MIL
(one branch per class) and, in 5-fold cross-validation on the 189 patients, separated AML from
controls perfectly and found APL (PML_RARA) with F1 0.86 +- 0.05. A re-run on a fixed
37-patient test set reached accuracy 0.865 with the per-class F1 below.
"""

from __future__ import annotations

SCEMILA_TEST_ACCURACY = 0.865
SCEMILA_TEST_F1 = {
    "control": 1.00,
    "PML_RARA": 0.93,
    "NPM1": 0.84,
    "CBFB_MYH11": 0.75,
    "RUNX1_RUNX1T1": 0.71,
}
SCEMILA_CV_F1 = {"PML_RARA": (0.86, 0.05)}  # 5-fold cross-validation, mean and sd
SOURCE = "Hehr et al. 2023 (SCEMILA): accuracy and F1 on a 37-patient test set; F1 in 5-fold CV"
