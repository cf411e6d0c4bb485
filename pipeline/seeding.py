"""One random generator per sample, addressed by its ids, never by worker or chunk.

Spawn keys and what they seed (each element < 2**32, so a key of n elements is n words and keys of different
lengths never meet):
  (class, sample)          one sample (the background-only images are the pseudo class after the real ones)
  (class,)                 the split of each of a class's samples
  (ASSET_TAG, kind, index) the division of input files among the splits (output.split_by): three words, so never
                           a sample's or a class's key
"""
import numpy as np

ASSET_TAG = 0x5350_4C54  # "SPLT"
# kind of asset -> second word of its key; the third is the class index for photos, 0 for the others
ASSET_KINDS = {"photos": 0, "backgrounds": 1, "distractors": 2}


def sample_rng(root_seed: int, class_idx: int, sample_idx: int) -> np.random.Generator:
    """Generator for one sample; equal to SeedSequence(root).spawn(...)[class].spawn(...)[sample]."""
    return np.random.default_rng(np.random.SeedSequence(root_seed, spawn_key=(class_idx, sample_idx)))


def split_rng(root_seed: int, class_idx: int) -> np.random.Generator:
    """Generator for one class's train/val assignment; its spawn key (class,) is never a sample's (class, sample)."""
    return np.random.default_rng(np.random.SeedSequence(root_seed, spawn_key=(class_idx,)))


def asset_rng(root_seed: int, kind: str, index: int = 0) -> np.random.Generator:
    """Generator that divides one group of input files (a class's photos, the backgrounds, the distractors) among
    the splits; its three-word key is never a sample's or a class's."""
    return np.random.default_rng(np.random.SeedSequence(root_seed, spawn_key=(ASSET_TAG, ASSET_KINDS[kind], index)))
