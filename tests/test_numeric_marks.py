"""Letters-only diagrams (lesson 08's marks study, MMGeoLM Table 5): the same scenes, captions and questions,
drawn without length labels or angle values; builds and runs with marks keep their bytes."""

import dataclasses

import numpy as np
import pytest

from mmgeo_utils.clip import TrainConfig
from mmgeo_utils.clip.train import dataset_root
from mmgeo_utils.data import DatasetConfig, build_dataset, load_image, load_split
from mmgeo_utils.diagrams.render import render
from mmgeo_utils.diagrams.scene import AngleMark, LengthLabel, Scene
from mmgeo_utils.diagrams.style import RenderStyle, sample_style
from mmgeo_utils.experiments.ablation import arm_config, studies

TINY = DatasetConfig(name="tiny", image_size=64, n_train=6, n_val=2, n_test=2, seed=3, num_negatives=2)


def _with_values(rows) -> dict:
    return next(r for r in rows if any(e.get("type") == "length_label" for e in r["scene"]["elements"]))


def test_letters_only_draws_exactly_the_scene_without_its_values(tmp_path):
    root = build_dataset(dataclasses.replace(TINY, num_negatives=0), out_dir=tmp_path / "d", workers=1, progress=False)
    row = _with_values(load_split(root, "train"))
    scene = Scene.from_dict(row["scene"])
    style = RenderStyle.from_dict(row["style"])
    off = dataclasses.replace(style, numeric_marks=False)
    bare = dataclasses.replace(
        scene,
        elements=tuple(
            dataclasses.replace(e, label=None) if isinstance(e, AngleMark) else e
            for e in scene.elements
            if not isinstance(e, LengthLabel)
        ),
    )
    letters = render(scene, off)
    assert np.array_equal(np.asarray(letters.image), np.asarray(render(bare, style).image))
    assert letters.annotation_boxes == [] and set(letters.label_boxes) == set(render(scene, style).label_boxes)
    assert not np.array_equal(np.asarray(letters.image), np.asarray(render(scene, style).image))


def test_the_switch_is_written_only_when_off_so_existing_builds_and_runs_keep_their_bytes():
    style = sample_style(96, 5)
    assert "numeric_marks" not in style.to_dict()
    off = dataclasses.replace(style, numeric_marks=False)
    assert off.to_dict()["numeric_marks"] is False and RenderStyle.from_dict(off.to_dict()) == off
    marks, letters = DatasetConfig.from_profile("smoke"), DatasetConfig.from_profile("smoke", numeric_marks=False)
    assert "numeric_marks" not in marks.to_dict() and DatasetConfig.from_dict(letters.to_dict()) == letters
    assert letters.key() != marks.key() and letters.name == "smoke-letters"
    run = TrainConfig(profile="smoke")
    assert "numeric_marks" not in run.to_dict() and "letters" not in run.run_name()
    bare = dataclasses.replace(run, numeric_marks=False)
    assert bare.run_name().endswith("-letters-s0") and bare.to_dict()["numeric_marks"] is False


def test_a_letters_only_build_keeps_the_captions_and_questions_and_makes_no_invisible_negative(tmp_path):
    marks = build_dataset(TINY, out_dir=tmp_path / "marks", workers=1, progress=False)
    letters = build_dataset(
        dataclasses.replace(TINY, numeric_marks=False), out_dir=tmp_path / "letters", workers=1, progress=False
    )
    a, b = load_split(marks, "train"), load_split(letters, "train")
    assert [r["caption"] for r in a] == [r["caption"] for r in b] and [r["qa"] for r in a] == [r["qa"] for r in b]
    assert all(r["style"]["numeric_marks"] is False for r in b) and all("numeric_marks" not in r["style"] for r in a)
    valued = [i for i, r in enumerate(a) if any(e.get("type") == "length_label" for e in r["scene"]["elements"])]
    assert valued and any(
        not np.array_equal(np.asarray(load_image(marks, a[i])), np.asarray(load_image(letters, b[i]))) for i in valued
    )
    # every image negative of the letters build differs from its positive in pixels: a value edit draws nothing new
    for r in b:
        positive = np.asarray(load_image(letters, r))
        for neg in r["image_negatives"]:
            assert not np.array_equal(positive, np.asarray(load_image(letters, {**neg, "split": "train"})))
    value_edits = {"change_length", "change_angle"}  # they only rewrite a drawn value
    assert any(n["perturbation"] in value_edits for r in a for n in r["image_negatives"])
    assert not any(n["perturbation"] in value_edits for r in b for n in r["image_negatives"])


def test_the_marks_study_trains_the_recipe_on_both_drawings(monkeypatch, tmp_path):
    monkeypatch.setenv("MMGEO_DATA_DIR", str(tmp_path / "data"))
    study = studies("smoke")["marks"]
    with_marks, letters = (arm_config("smoke", arm, 0) for arm in study.arms)
    assert with_marks.numeric_marks and not letters.numeric_marks
    assert dataclasses.replace(letters, numeric_marks=True) == with_marks  # the drawing is the only change
    assert [a.paper for a in study.arms] == [54.9, 51.7]
    root = dataset_root(letters)
    assert root.name.startswith("smoke-letters-") and load_split(root, "train", 1)[0]["style"]["numeric_marks"] is False


@pytest.mark.parametrize("flag", [["data", "build"], ["train-clip"]])
def test_the_cli_takes_letters_only(flag):
    from mmgeo_utils.cli import build_parser

    args = build_parser().parse_args([*flag, "--profile", "smoke", "--letters-only"])
    assert args.letters_only
