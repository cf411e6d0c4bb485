"""Ray's joblib backend (which cannot stream results: the runner falls back to waves) gives loky's bytes."""
import pytest

from tests.conftest import tree_digest

pytestmark = pytest.mark.slow
pytest.importorskip("ray")


def test_ray_local_cluster_matches_loky(layout, generate):
    args = ("samples.per_class=5", "seed=4", "workers.chunk_size=2")
    loky = generate(layout, *args, "workers.n_jobs=2")
    ray = generate(layout, *args, "workers=ray", "workers.n_jobs=2")
    assert tree_digest(ray) == tree_digest(loky)
    assert len(tree_digest(ray)) == 10 * 6 + 7
