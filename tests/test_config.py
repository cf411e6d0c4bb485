"""Config composition through Hydra's compose API: defaults, good and bad overrides, range checks."""
import pytest
from hydra.errors import ConfigCompositionException

from pipeline.errors import ConfigError
from pipeline.schema import QuiltgenConfig
from tests.conftest import compose_cfg, make_config


def test_defaults_compose_to_the_schema():
    cfg = make_config()
    assert isinstance(cfg, QuiltgenConfig)
    assert (cfg.quilt.width, cfg.quilt.height, cfg.quilt.rows, cfg.quilt.cols) == (1920, 1080, 2, 2)
    assert (cfg.augment.scale.min, cfg.augment.scale.max) == (0.5, 2.0)
    assert (cfg.compose.aspect.min, cfg.compose.aspect.max) == (0.2, 2.0)
    assert cfg.workers.backend == "loky"
    assert cfg.input.root is None and cfg.seed == 0 and cfg.samples.repeats == 1


def test_overrides_reach_every_group():
    cfg = make_config(["input.root=/data/parts", "samples.repeats=2", "workers.n_jobs=2", "seed=7",
                       "augment.scale.max=1.5", "quilt.rows=3", "compose.aspect.max=3", "output.previews=false"])
    assert cfg.input.root == "/data/parts"
    assert (cfg.samples.repeats, cfg.workers.n_jobs, cfg.seed) == (2, 2, 7)
    assert cfg.augment.scale.max == 1.5 and cfg.quilt.rows == 3
    assert cfg.compose.aspect.max == 3.0 and cfg.output.previews is False


def test_debug_and_experiment_presets():
    debug = make_config(["debug=default"])
    assert (debug.samples.per_class, debug.workers.n_jobs, debug.quilt.width) == (2, 1, 640)
    experiment = make_config(["experiment=example"])
    assert (experiment.seed, experiment.quilt.rows, experiment.augment.shear.enabled) == (7, 3, False)
    original = make_config(["experiment=original"])
    assert (original.compose.objects.min, original.compose.objects.max, original.compose.max_truncation) == (1, 1, 0)
    assert original.compose.blending.hard == 1 and original.compose.blending.poisson == 0
    assert not original.augment.rotation.enabled and not original.augment.noise.enabled
    assert original.output.formats == ["voc"]


@pytest.mark.parametrize("override, message", [
    ("quilt.foo=1", "Could not override 'quilt.foo'"),
    ("quilt.rows=abc", "Error merging override quilt.rows=abc"),
    ("augment=nope", "Could not find 'augment/nope'"),
    ("samples.repeats=1.5", "Error merging override samples.repeats=1.5"),
    ("experiment=orignal", "Could not find 'experiment/orignal'"),  # a misspelled preset is not silently skipped
    ("debug=defualt", "Could not find 'debug/defualt'"),
    ("sweep=paralel", "Could not find 'sweep/paralel'"),
])
def test_bad_overrides_fail_at_composition(override, message):
    with pytest.raises(ConfigCompositionException, match=message):
        compose_cfg([override])


@pytest.mark.parametrize("override", ["+quilt.foo=1", "+augment.scale.bar=2", "+nope=3"])
def test_appended_unknown_keys_are_rejected(override):
    key = override[1:].split("=")[0]
    with pytest.raises(ConfigError, match=f"^{key}: unknown key"):
        make_config([override])


@pytest.mark.parametrize("overrides, message", [
    (["augment.scale.min=3"], r"augment.scale: min must be <= max, got min=3.0, max=2.0"),
    (["augment.scale.min=0", "augment.scale.max=0"], r"augment.scale.min: must be > 0"),
    (["augment.shear.max=1.5"], r"augment.shear.max: must be <= 1.0, got 1.5"),
    (["augment.object_brightness.min=-1"], r"augment.object_brightness.min: must be >= 0.0"),
    (["augment.blur.kernel_sizes=[1,4]"], r"augment.blur.kernel_sizes: .*odd.*got 4"),
    (["augment.blur.kernel_sizes=[]"], r"augment.blur.kernel_sizes: must list at least one"),
    (["quilt.width=0"], r"quilt.width: must be > 0, got 0"),
    (["quilt.zoom.min=0.5"], r"quilt.zoom.min: must be >= 1.0"),
    (["compose.aspect.min=3"], r"compose.aspect: min must be <= max"),
    (["compose.min_box_size=0"], r"compose.min_box_size: must be >= 1"),
    (["output.jpeg_quality=101"], r"output.jpeg_quality: must be in \[1, 100\], got 101"),
    (["output.preview_scale=0"], r"output.preview_scale: must be in \(0, 1\]"),
    (["output.formats=[voc,tiff]"], r"output.formats: unknown format 'tiff'"),
    (["workers.n_jobs=0"], r"workers.n_jobs: must be a positive count"),
    (["workers.backend=threads"], r"workers.backend: must be one of \['loky', 'sequential', 'dask', 'ray'\]"),
    (["samples.repeats=0"], r"samples.repeats: must be >= 1, got 0"),
    (["samples.per_class=0"], r"samples.per_class: must be >= 1 or null"),
    (["input.on_bad_file=maybe"], r"input.on_bad_file: must be 'error' or 'skip', got 'maybe'"),
    (["output.splits.train=0.5"], r"output.splits: fractions must sum to 1, got 0.7 .*output.splits.val=0"),
    (["output.splits.val=-0.2", "output.splits.train=1.2"], r"output.splits.val: must be >= 0, got -0.2"),
    (["output.coco_segmentation=mesh"], r"output.coco_segmentation: must be 'auto' \(a polygon where it is exact, "
                                        r"else RLE\) or 'rle', got 'mesh'$"),
    (["output.coco_segmentation=polygon"], r"got 'polygon'; polygons that drop holes are gone, 'auto' writes"),
    (["output.formats=[voc,voc]"], r"output.formats: lists a format twice"),
    (["compose.objects.min=4"], r"compose.objects: min must be <= max, got min=4, max=3"),
    (["compose.objects.min=0"], r"compose.objects.min: must be >= 1, got 0"),
    (["compose.max_occlusion=1"], r"compose.max_occlusion: must be in \[0, 1\), got 1.0"),
    (["compose.max_iou=0"], r"compose.max_iou: must be in \(0, 1\], got 0.0"),
    (["compose.blending.hard=0", "compose.blending.feather=0", "compose.blending.poisson=0",
      "compose.blending.motion=0"], r"compose.blending: all weights are 0"),
    (["compose.blending.motion=-1"], r"compose.blending.motion: weight must be >= 0"),
    (["augment.size=volume"], r"augment.size: must be one of \['scale', 'normalised', 'area', 'side_px', "
                              r"'side_fraction'\], got 'volume'"),
    (["augment.side_fraction.max=1.5"], r"augment.side_fraction.max: must be <= 1.0, got 1.5"),
    (["augment.perspective.max=0.5"], r"augment.perspective.max: must be <= 0.4, got 0.5"),
    (["augment.object_gamma.min=0"], r"augment.object_gamma.min: must be > 0, got 0.0"),
    (["augment.shadow.opacity.max=1.5"], r"augment.shadow.opacity.max: must be <= 1.0, got 1.5"),
    (["augment.area.max=2"], r"augment.area.max: must be <= 1.0, got 2.0"),
    (["augment.rotation.min=-200"], r"augment.rotation.min: must be >= -180.0"),
    (["augment.flip.horizontal=1.5"], r"augment.flip.horizontal: must be a probability in \[0, 1\], got 1.5"),
    (["augment.jpeg_quality.max=120"], r"augment.jpeg_quality.max: must be <= 100.0"),
    (["augment.color_match.max=2"], r"augment.color_match.max: must be <= 1.0"),
    (["augment.noise.min=-1"], r"augment.noise.min: must be >= 0.0"),
    (["compose.distractors.max=1"], r"compose.distractors: max=1 but input.distractor_dir is unset"),
    (["seed=-1"], r"seed: must be >= 0 .*got -1"),
])
def test_range_errors_name_the_key_and_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(overrides)


@pytest.mark.parametrize("name", ["path", "names", "nc", "download", "channels", "yaml_file", "validation"])
def test_a_split_named_like_a_data_yaml_key_is_refused_at_start_in_one_line(name):
    with pytest.raises(ConfigError) as excinfo:
        make_config([f"+output.splits.{name}=0.5"])
    message = str(excinfo.value)
    assert "\n" not in message
    if "_" in name:  # VOC reads ImageSets/Main/<class>_<split>.txt as one class's list
        assert message.startswith(f"output.splits.{name}: split names must be plain words of letters and digits")
    else:
        assert message == (f"output.splits.{name}: '{name}' is a key of YOLO's data.yaml with a meaning of its own, "
                           f"so it cannot name a split; use another name, e.g. +output.splits.holdout=0.5")


def test_plain_split_names_pass_and_no_formats_warns_that_only_images_are_written(caplog):
    cfg = make_config(["output.splits.train=0.7", "output.splits.val=0.2", "+output.splits.test=0.05",
                       "+output.splits.holdout2=0.05"])
    assert list(cfg.output.splits) == ["train", "val", "test", "holdout2"]
    assert "output.formats is empty" not in caplog.text
    make_config(["output.formats=[]"])
    assert ("output.formats is empty: only the images, previews and manifest.jsonl are written, no annotation "
            "files; list formats to get them, e.g. output.formats=[coco,yolo]") in caplog.text


@pytest.mark.parametrize("override, message", [
    ("output.formats=coco", "output.formats: a list, not one value; e.g. output.formats=[coco]"),
    ("compose.blending.every=null", "compose.blending.every: cannot be null; e.g. compose.blending.every=[]"),
    ("augment.shadow=true", "augment.shadow: a group of settings, not one value; e.g. augment.shadow.enabled=true"),
    ("compose.objects=3", "compose.objects: a group of settings, not one value; `quiltgen --cfg job` lists its keys"),
    ("output.splits=[train]", "output.splits: maps names to values, not a list; e.g. output.splits={train: 0.8, "
                              "val: 0.2}"),
])
def test_a_plain_value_for_a_list_mapping_or_group_is_one_line_with_an_example(override, message):
    """Hydra says "Error merging override" in four lines without a fix; each example given must compose."""
    from pipeline.cli import check_override_keys
    from tests.conftest import config_dir

    with pytest.raises(ConfigError) as err:
        check_override_keys([override], [config_dir()])
    assert str(err.value) == message
    with pytest.raises(ConfigCompositionException):
        compose_cfg([override])  # what Hydra alone would do
    example = message.split("e.g. ")[-1]
    if "=" in example:
        check_override_keys([example], [config_dir()])
        compose_cfg([example])
    check_override_keys(["output.formats=[coco]", "augment.shadow.enabled=true", "-m", "output.formats=[a],[b]"],
                        [config_dir()])


def test_presets_in_the_user_s_config_folders_are_accepted(tmp_path):
    """README: copy a preset into your own folder (-cd, or hydra.searchpath) and select it by name."""
    from pipeline.cli import prepare_argv
    from tests.conftest import config_dir

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nseed: 42\n")
    for args in (["-cd", str(tmp_path), "experiment=mine"],
                 [f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"]):
        assert prepare_argv(args, config_dir())[-1] == "experiment=mine"
    with pytest.raises(ConfigError, match=r"^experiment=mien: no such preset; the experiment presets are example, "
                                          r"mine, original$"):
        prepare_argv(["-cd", str(tmp_path), "experiment=mien"], config_dir())
    cfg = compose_cfg([f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"])
    assert cfg.seed == 42


def test_an_evaluate_key_without_an_evaluation_chosen_is_one_line():
    """Hydra alone fails with an AssertionError traceback: the evaluate node is null by default."""
    from pipeline.cli import check_override_keys
    from tests.conftest import config_dir

    with pytest.raises(ConfigError, match=r"^evaluate.reference: no evaluation is chosen \(the default is none\); "
                                          r"add evaluate=reference or evaluate=command$"):
        check_override_keys(["evaluate.reference=/x"], [config_dir()])
    check_override_keys(["evaluate.reference=/x", "evaluate=reference"], [config_dir()])


def test_home_is_expanded_in_sweep_lists_and_a_resume_folder_is_quoted_for_hydra(monkeypatch):
    from pipeline.cli import prepare_argv
    from tests.conftest import config_dir

    monkeypatch.setenv("HOME", "/home/u")
    argv = prepare_argv(["-m", "input.root=~/a,~/b", "resume=/runs/0_seed=1,x=2"], config_dir())
    assert argv == ["-m", "input.root=/home/u/a,/home/u/b", 'resume="/runs/0_seed=1,x=2"']


def test_version_is_quiltgen_s_and_a_replay_with_another_config_name_is_refused(tmp_path, capsys):
    from pipeline.cli import prepare_argv
    from tests.conftest import config_dir

    with pytest.raises(SystemExit) as done:
        prepare_argv(["--version"], config_dir())
    assert done.value.code == 0 and capsys.readouterr().out.startswith("quiltgen 0.")
    record = tmp_path / ".hydra"
    record.mkdir()
    (record / "config.yaml").write_text("seed: 1\n")
    (record / "hydra.yaml").write_text("hydra: {}\n")
    with pytest.raises(ConfigError, match=r"^-cn hydra: a run's .hydra/ holds its frozen config as config.yaml"):
        prepare_argv(["-cd", str(record), "-cn", "hydra"], config_dir())
    assert "--config-path" in prepare_argv(["-cd", str(record), "-cn", "config"], config_dir())
