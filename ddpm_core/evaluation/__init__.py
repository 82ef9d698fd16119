"""Evaluation: the digit classifier and the sample-quality numbers built on it (chapters 4, 7),
and a second, independent feature extractor for the same distance (chapter 10).

Uses data and shipped weights; never the trainer of the diffusion model.
"""

from .classifier import DigitsClassifier, classifier_accuracy, load_digits_classifier, train_digits_classifier
from .metrics import (CONFIDENCE, DigitsQuality, digits_fid, digits_fid_floor, digits_quality, digits_reference_split,
                      frechet_distance)
from .independent import independent_digits_fid, independent_digits_fid_floor, independent_features
