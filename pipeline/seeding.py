"""One random generator per sample, addressed by its ids, never by worker or chunk."""
import numpy as np


def sample_rng(root_seed: int, class_idx: int, sample_idx: int) -> np.random.Generator:
    """Generator for one sample; equal to SeedSequence(root).spawn(...)[class].spawn(...)[sample]."""
    return np.random.default_rng(np.random.SeedSequence(root_seed, spawn_key=(class_idx, sample_idx)))


def split_rng(root_seed: int, class_idx: int) -> np.random.Generator:
    """Generator for one class's train/val assignment; its spawn key (class,) is never a sample's (class, sample)."""
    return np.random.default_rng(np.random.SeedSequence(root_seed, spawn_key=(class_idx,)))
