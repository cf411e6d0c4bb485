"""Who goes where: each sample's split and sources, and (``output.split_by``) the input files of each split.

Planned once in the parent, exactly and reproducibly from the seed. Workers get the result as plain lists: the
files of each split in ``settings["plan"]``, each sample's split and sources in its task; they never re-plan.

``output.split_by``:
  sample            each class's samples get exact split sizes, shuffled; every split uses every input file
  photo             each class's photos (and the distractors) are divided among the splits: a sample of split S
                    pastes only S's cut-outs, for its first object, its extra objects of any class and its distractors
  background        the backgrounds are divided: every tile of a sample of split S is cut from S's backgrounds
  photo+background  both

Files are divided by fractions ``output.splits`` (largest remainders), at least one per split of fraction > 0;
fewer files than such splits is an error. Samples per split:
  ``samples.per_class`` set: exact sizes per class, as for ``sample``; the first object cycles through the photos
     of the sample's split, in sample order.
  loop mode (per_class unset: photo x background x repeats): the loop decides the split. Photo i with background j
     goes to photo i's split (``photo``) or background j's (``background``), so split sizes follow the divided
     files. With ``photo+background`` photo i meets only the backgrounds of its own split: a class makes
     sum over its photos of (backgrounds in that photo's split) x repeats images.
Background-only images (``samples.background_fraction``) are the pseudo class after the real ones: exact split
sizes from that index's generator, no first object, every tile random (from the split's backgrounds).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.errors import InputError
from pipeline.seeding import asset_rng, split_rng

SPLIT_BY = ("sample", "photo", "background", "photo+background")
# Class name and image-name prefix of the background-only images; never a category of any format.
BACKGROUND = "background"


def active_splits(splits: dict[str, float]) -> list[str]:
    """Splits that get samples (fraction > 0), in config order."""
    return [name for name, fraction in splits.items() if fraction > 0]


def split_sizes(count: int, splits: dict[str, float]) -> dict[str, int]:
    """Exact split sizes summing to ``count``: floors first, leftovers to the largest remainders."""
    exact = {name: fraction * count for name, fraction in splits.items() if fraction > 0}
    sizes = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: sizes[name] - exact[name])  # stable: config order on ties
    for name in by_remainder[:count - sum(sizes.values())]:
        sizes[name] += 1
    return sizes


def assign_splits(seed: int, class_idx: int, count: int, splits: dict[str, float]) -> list[str]:
    """Split name of each of a class's samples: exact sizes, shuffled by the class's own generator."""
    sizes = split_sizes(count, splits)
    names = np.repeat(list(sizes), list(sizes.values()))
    return names[split_rng(seed, class_idx).permutation(count)].tolist()


def asset_sizes(count: int, splits: dict[str, float]) -> dict[str, int]:
    """``split_sizes``, then one file for each split left with none, taken from the largest (when it can spare one)."""
    sizes = split_sizes(count, splits)
    for name in sizes:
        if sizes[name] == 0:
            donor = max(sizes, key=sizes.__getitem__)  # the first largest, in config order
            if sizes[donor] < 2:
                break
            sizes[donor] -= 1
            sizes[name] += 1
    return sizes


def divide(rng: np.random.Generator, count: int, splits: dict[str, float]) -> dict[str, list[int]]:
    """Indices 0..count-1 shuffled into the splits by ``asset_sizes``; each split's list in ascending order."""
    order = rng.permutation(count).tolist()
    groups, start = {}, 0
    for name, size in asset_sizes(count, splits).items():
        groups[name] = sorted(order[start:start + size])
        start += size
    return groups


def _check_enough(count: int, names: list[str], what: str, where: Path, split_by: str) -> None:
    if count < len(names):
        raise InputError(f"{what}: {count} for {len(names)} splits ({', '.join(names)}) with output.split_by="
                         f"{split_by}, which gives each split files of its own: add some to {where}, give fewer splits "
                         f"a fraction (e.g. output.splits.val=0 output.splits.train=1) or use another output.split_by")


def divide_inputs(seed: int, bank: dict, split_by: str, splits: dict[str, float], distractors_used: bool) -> dict:
    """The input files of each split, for ``settings['plan']``: ``photos`` {split: [[object indices] per class]},
    ``backgrounds`` and ``distractors`` {split: [indices]}; None where ``split_by`` does not divide them."""
    names, kinds, root = active_splits(splits), split_by.split("+"), Path(bank.get("root", "."))
    divided = {"photos": None, "backgrounds": None, "distractors": None}
    if "photo" in kinds:
        per_class = []
        for c, cls in enumerate(bank["classes"]):
            folder = root / Path(cls["objects"][0]["photo"]).parent
            _check_enough(len(cls["objects"]), names, f"class '{cls['name']}' has too few usable photos", folder,
                          split_by)
            per_class.append(divide(asset_rng(seed, "photos", c), len(cls["objects"]), splits))
        divided["photos"] = {name: [groups[name] for groups in per_class] for name in names}
        if distractors_used:
            folder = root / Path(bank["distractors"][0]["photo"]).parent
            _check_enough(len(bank["distractors"]), names, "too few distractors", folder, split_by)
            divided["distractors"] = divide(asset_rng(seed, "distractors"), len(bank["distractors"]), splits)
    if "background" in kinds:
        folder = root / Path(bank["backgrounds"][0]["source"]).parent
        _check_enough(len(bank["backgrounds"]), names, "too few backgrounds", folder, split_by)
        divided["backgrounds"] = divide(asset_rng(seed, "backgrounds"), len(bank["backgrounds"]), splits)
    return divided


def allowed(plan: dict, kind: str, split: str) -> list | None:
    """The indices of ``kind`` (photos: one list per class) a sample of ``split`` may use; None = all of them."""
    groups = plan.get(kind)
    return None if groups is None else groups[split]


def plan_class(plan: dict, seed: int, splits: dict[str, float], class_idx: int, n_objects: int
               ) -> tuple[list[str], list[tuple[int, int | None]]]:
    """Each sample's split and (first object index, pinned first background or None), in sample order."""
    photos, backgrounds = plan["photos"], plan["backgrounds"]
    if plan["per_class"] is None:  # the original's loop: photo x background x repeats
        photo_split = {i: name for name, groups in (photos or {}).items() for i in groups[class_idx]}
        every_background = range(plan["n_backgrounds"])
        sources = [(i, j) for i in range(n_objects)
                   for j in (backgrounds[photo_split[i]] if photos and backgrounds else every_background)
                   for _ in range(plan["repeats"])]
        if photos is not None:
            return [photo_split[i] for i, _ in sources], sources
        if backgrounds is not None:
            background_split = {j: name for name, group in backgrounds.items() for j in group}
            return [background_split[j] for _, j in sources], sources
        return assign_splits(seed, class_idx, len(sources), splits), sources
    names = assign_splits(seed, class_idx, plan["per_class"], splits)
    if photos is None:
        return names, [(s % n_objects, None) for s in range(len(names))]
    turn = dict.fromkeys(photos, 0)
    sources = []
    for name in names:
        group = photos[name][class_idx]
        sources.append((group[turn[name] % len(group)], None))
        turn[name] += 1
    return names, sources


def background_only_count(object_images: int, fraction: float) -> int:
    """Background-only images that make ``fraction`` of the whole dataset (rounded)."""
    return round(object_images * fraction / (1 - fraction)) if fraction > 0 else 0


def plan_background_only(seed: int, n_classes: int, count: int, splits: dict[str, float]
                         ) -> tuple[list[str], list[tuple[None, None]]]:
    """Splits of the background-only images, the pseudo class ``n_classes``; no object, no pinned background."""
    return assign_splits(seed, n_classes, count, splits), [(None, None)] * count
