"""Shared settings of the tests that run an ``experiments/compat_fmnist_*.yaml`` end to end."""

TINY_COMPAT_RUN = [
    "train.epochs=1",
    "stream.n_experiences=2",
    "stream.classes_per_experience=[3,3]",
    "stream.train_per_class=20",
    "stream.test_per_class=10",
    "analysis.compatibility.gallery_per_class=10",
]
"""Overrides that shrink a compat run to seconds (2 tasks of 3 of the 6 trained classes, tiny splits)."""
