"""The same tasks on other joblib backends give the same bytes as loky."""
import pytest

from tests.conftest import free_port, tree_digest

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")

ARGS = ("samples.per_class=5", "seed=4")


def test_dask_cluster_on_loopback_matches_loky(layout, generate, dask_scheduler):
    loky = generate(layout, *ARGS, "workers.n_jobs=2")
    dask = generate(layout, *ARGS, "workers=dask", f"workers.scheduler_address={dask_scheduler}")
    # per sample: image, preview, VOC file + link, YOLO label + link; manifest, COCO x2, data.yaml, ImageSets x2,
    # labelmap
    assert len(tree_digest(loky)) == 10 * 6 + 7
    assert tree_digest(dask) == tree_digest(loky)


def test_dask_local_cluster_matches_loky(layout, generate):
    loky = generate(layout, *ARGS, "workers.n_jobs=2")
    dask = generate(layout, *ARGS, "workers=dask", "workers.n_jobs=2")
    assert tree_digest(dask) == tree_digest(loky)


def test_unreachable_scheduler_is_a_config_error_naming_the_key(layout, generate, tmp_path, monkeypatch):
    from pipeline import backends
    from pipeline.errors import ConfigError

    monkeypatch.setattr(backends, "DASK_CONNECT_TIMEOUT", "1s")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ConfigError, match=rf"^workers.scheduler_address: no Dask scheduler answered at {address} "
                                          r"within 1s .*leave workers.scheduler_address unset"):
        generate(layout, *ARGS, "workers=dask", f"workers.scheduler_address={address}", out=tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
