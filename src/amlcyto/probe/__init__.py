"""The probe of cell feature extractors (``amlcyto probe``): the same labelled cells embedded
by several extractors, each scored by kNN and a linear probe in the same folds grouped by
patient, and drawn as a 2-D map coloured by class, the way foundation-model papers compare
extractors.

```
cells.py    the features files read and lined up: the same cells, in the first file's order
folds.py    the folds: grouped by patient (by image where there are none), stratified, seeded
methods.py  kNN and the linear probe, fitted on a fold's training cells only
scores.py   a fold's scores, and their mean and sd over folds
maps.py     a file's t-SNE map, coloured by class (PNG)
probe.py    probe(): every file, method and fold -> probe.csv, folds.csv and the maps
```
"""
