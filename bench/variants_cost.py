"""What ``compose.blending.every`` costs: ``render_sample`` per sample (layout), by the methods listed.

    python bench/variants_cost.py [--samples 12] [--rounds 5]     (from the repository root; about 40 s)

The default config on the demo set at 1920x1080, previews on, every sample rendered and written (into a temporary
folder) by each config in turn, round after round; the median of process CPU time per sample is printed, in ms.
The cost of an extra image of a layout is the difference between two lists that differ by one method: the layout
(background, augmentation, placement) is drawn once whatever the list, an image re-does the pastes, the noise, the
encodes and the writes.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline import render, runner  # noqa: E402
from pipeline.app import config_dir  # noqa: E402
from pipeline.backends import parallel_backend  # noqa: E402
from pipeline.schema import validate  # noqa: E402

LISTS = {"default (one method drawn per object)": [], "[hard]": ["hard"], "[hard,feather]": ["hard", "feather"],
         "[hard,motion]": ["hard", "motion"], "[hard,poisson]": ["hard", "poisson"],
         "[hard,feather,motion]": ["hard", "feather", "motion"],
         "[hard,feather,poisson,motion]": ["hard", "feather", "poisson", "motion"]}


def prepare(every: list[str], samples: int, scratch: Path) -> tuple[dict, dict, list]:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = validate(compose(config_name="config", overrides=[
            f"samples.per_class={samples}", f"compose.blending.every=[{','.join(every)}]",
            f"input.cache_dir={scratch / 'demo'}"]))
    settings = dataclasses.asdict(cfg)
    catalog = runner.scan_inputs(settings)
    with parallel_backend({"backend": "sequential", "n_jobs": 1}) as n_workers:
        bank, _ = runner.build_bank(catalog, scratch / f"bank-{len(every)}-{'-'.join(every)}", settings, n_workers)
    _, splits, sources = runner.plan_samples(bank, settings)
    jobs = [(c, s, splits[c][s], sources[c][s]) for c in range(len(bank["classes"])) for s in range(samples)]
    return settings, bank, jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4, help="samples per class (the demo set has 3 classes)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in the workers
    scratch = Path(tempfile.mkdtemp(prefix="variants-cost-"))
    cases = {name: prepare(every, args.samples, scratch) for name, every in LISTS.items()}
    times = {name: [] for name in cases}
    for n in range(args.rounds):
        for name, (settings, bank, jobs) in cases.items():
            out = scratch / f"out-{n}-{len(times[name])}-{abs(hash(name))}"
            start = time.process_time()
            for c, s, split, sources in jobs:
                render.render_sample(bank, settings, c, s, split, sources, out)
            times[name].append((time.process_time() - start) / len(jobs) * 1e3)
    result = {name: statistics.median(values) for name, values in times.items()}
    base = result["[hard]"]
    for name, ms in result.items():
        images = max(1, len(LISTS[name]))
        extra = f", +{ms - base:.1f} over [hard]" if images > 1 else ""
        print(f"{name:40s} {ms:7.1f} ms per sample, {images} image(s), {ms / images:5.1f} ms per image{extra}")


if __name__ == "__main__":
    main()
