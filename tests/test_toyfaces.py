"""Tests for the procedural toy-face generator (diffedit_cli.data.toyfaces)."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from diffedit_cli.data import toyfaces as tf
from diffedit_cli.errors import DiffeditError, InputError

CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()

# part-local attributes and the part whose masks (before or after the edit) contain every changed pixel
LOCAL_EDITS = {
    "Smiling": "mouth", "Mouth_Slightly_Open": "mouth", "Narrow_Eyes": "eyes",
    "Eyeglasses": "glasses", "Wearing_Hat": "hat", "Bangs": "hair",
}


@pytest.fixture(scope="module")
def faces():
    return [tf.sample_face(seed) for seed in range(2000)]


def test_attributes_are_celeba_names_in_celeba_order():
    assert len(tf.ATTRIBUTES) >= 11
    assert set(tf.ATTRIBUTES) <= set(CELEBA_NAMES)
    assert tf.ATTRIBUTES == sorted(tf.ATTRIBUTES, key=CELEBA_NAMES.index)


def test_groups_partition_attributes_and_fields():
    attrs = [a for group in tf.GROUPS.values() for a in group.attributes]
    fields = [f for group in tf.GROUPS.values() for f in group.fields]
    assert sorted(attrs) == sorted(tf.ATTRIBUTES)
    assert sorted(fields) == sorted(f.name for f in dataclasses.fields(tf.FaceParams))
    assert set(tf.GROUPS) == {"identity", "hair", "mouth", "eyes", "accessories", "background", "pose"}
    assert "No_Beard" in tf.GROUPS["identity"].attributes
    assert "Eyeglasses" in tf.GROUPS["accessories"].attributes


def test_render_is_deterministic_and_seeds_differ():
    image, masks = tf.render(tf.sample_face(7))
    again, masks_again = tf.render(tf.sample_face(7))
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert image.tobytes() == again.tobytes()
    assert all(np.array_equal(masks[p], masks_again[p]) for p in tf.PARTS)
    assert tf.sample_face(7) != tf.sample_face(8)
    assert not np.array_equal(image, tf.render(tf.sample_face(8))[0])


def test_masks_cover_the_image_and_match_visible_parts():
    for seed in range(20):
        face = tf.sample_face(seed)
        image, masks = tf.render(face)
        assert set(masks) == set(tf.PARTS)
        assert all(m.dtype == bool and m.shape == (64, 64) for m in masks.values())
        assert np.logical_or.reduce(list(masks.values())).all()
        assert masks["glasses"].any() == face.eyeglasses
        assert masks["hat"].any() == face.wearing_hat
        assert masks["beard"].any() == face.beard
        assert masks["eyes"].any() and masks["mouth"].any() and masks["skin"].any()


def test_hat_occludes_hair_in_masks():
    face = next(f for f in map(tf.sample_face, range(100)) if not f.wearing_hat)
    hair = tf.render(face)[1]["hair"]
    masks = tf.render(tf.with_attribute(face, "Wearing_Hat", True))[1]
    covered = masks["hat"] & ~masks["hair"]
    assert (covered & hair).sum() > 20  # hair pixels now entirely under the hat


@pytest.mark.parametrize("name", sorted(LOCAL_EDITS))
def test_local_edits_change_only_their_part(name):
    part = LOCAL_EDITS[name]
    changed_any = False
    for seed in range(25):
        face = tf.sample_face(seed)
        edited = tf.with_attribute(face, name, not tf.attributes(face)[name])
        image, masks = tf.render(face)
        edited_image, edited_masks = tf.render(edited)
        changed = (image != edited_image).any(axis=2)
        assert not (changed & ~(masks[part] | edited_masks[part])).any(), (name, seed)
        changed_any |= changed.any()
    assert changed_any


def test_with_attribute_flips_only_that_label():
    implied = {  # (attribute, new value) -> other labels allowed to change
        ("Blond_Hair", True): {"Black_Hair"}, ("Black_Hair", True): {"Blond_Hair"},
        ("Male", False): {"No_Beard"}, ("No_Beard", False): {"Male"},
    }
    for seed in range(40):
        face = tf.sample_face(seed)
        before = tf.attributes(face)
        for name in tf.ATTRIBUTES:
            for value in (True, False):
                after = tf.attributes(tf.with_attribute(face, name, value))
                assert after[name] == value
                changed = {a for a in tf.ATTRIBUTES if after[a] != before[a]} - {name}
                assert changed <= implied.get((name, value), set()), (seed, name, value, changed)


def test_with_attribute_implied_changes_and_errors():
    face = tf.sample_face(0)
    blond = tf.with_attribute(tf.with_attribute(face, "Black_Hair", True), "Blond_Hair", True)
    assert tf.attributes(blond)["Blond_Hair"] and not tf.attributes(blond)["Black_Hair"]
    assert tf.HAIR_COLORS[tf.with_attribute(blond, "Blond_Hair", False).hair_color] == "brown"
    bearded = tf.with_attribute(tf.with_attribute(face, "Male", False), "No_Beard", False)
    assert bearded.male and bearded.beard
    assert not tf.with_attribute(bearded, "Male", False).beard
    assert tf.with_attribute(face, "Smiling", face.smiling) == face
    with pytest.raises(InputError, match="unknown attribute"):
        tf.with_attribute(face, "Wavy_Hair", True)


def test_share_group_copies_exactly_the_group():
    a, b = tf.sample_face(1), tf.sample_face(2)
    for group, members in tf.GROUPS.items():
        mixed = tf.share_group(a, b, group)
        for field in dataclasses.fields(tf.FaceParams):
            source = b if field.name in members.fields else a
            assert getattr(mixed, field.name) == getattr(source, field.name), (group, field.name)
        for name in members.attributes:
            assert tf.attributes(mixed)[name] == tf.attributes(b)[name]
    with pytest.raises(InputError, match="unknown parameter group"):
        tf.share_group(a, b, "shoes")


def test_frequencies_and_correlations(faces):
    labels = np.array([[tf.attributes(f)[a] for a in tf.ATTRIBUTES] for f in faces])
    freq = dict(zip(tf.ATTRIBUTES, labels.mean(axis=0)))
    assert all(0.15 <= f <= 0.75 for f in freq.values()), freq
    col = {a: labels[:, i] for i, a in enumerate(tf.ATTRIBUTES)}
    beard, male = ~col["No_Beard"], col["Male"]
    assert not beard[~male].any()
    assert 0.5 <= beard[male].mean() <= 0.7
    assert not (col["Blond_Hair"] & col["Black_Hair"]).any()
    smiling, mouth_open = col["Smiling"], col["Mouth_Slightly_Open"]
    assert mouth_open[smiling].mean() > mouth_open[~smiling].mean() + 0.2
    long_hair = np.array([tf.HAIR_STYLES[f.hair_style] == "long" for f in faces])
    assert not long_hair[male].any() and long_hair[~male].mean() > 0.4


def test_render_other_sizes():
    face = tf.sample_face(3)
    image, masks = tf.render(face, size=128)
    assert image.shape == (128, 128, 3) and masks["mouth"].shape == (128, 128)
    small = np.asarray(Image.fromarray(image).resize((64, 64), Image.BOX), dtype=float)
    assert np.abs(small - tf.render(face)[0]).mean() < 4.0  # same face at another resolution
    with pytest.raises(DiffeditError):
        tf.render(face, size=4)


def test_write_dataset_round_trips(tmp_path):
    out = tmp_path / "faces"
    seen = []
    assert tf.write_dataset(out, 5, seed=3, size=32, progress=seen.append) == out
    assert seen == list(range(5))
    names, files, labels = tf.read_attr_table(out / "list_attr.txt")
    assert names == tf.ATTRIBUTES and files == [f"{i:06d}.png" for i in range(5)]
    assert labels.dtype == np.int8 and labels.shape == (5, len(names))
    records = [json.loads(line) for line in (out / "params.jsonl").read_text().splitlines()]
    for i, record in enumerate(records):
        face = tf.FaceParams(**record["params"])
        assert face == tf.sample_face(record["seed"]) == tf.sample_face(tf.face_seed(3, i))
        assert list(labels[i]) == [int(tf.attributes(face)[a]) for a in names]
        image, masks = tf.render(face, 32)
        assert np.array_equal(np.asarray(Image.open(out / "images" / files[i])), image)
        with np.load(out / "masks" / f"{i:06d}.npz") as stored:
            assert all(np.array_equal(stored[p], masks[p]) for p in tf.PARTS)
    with pytest.raises(InputError, match="exists already"):
        tf.write_dataset(out, 5, seed=3)


def test_read_attr_table_celeba_format(tmp_path):
    table = tmp_path / "list_attr_celeba.txt"
    table.write_text("2\nSmiling Male  Bangs \n000001.jpg  1 -1 -1\n000002.jpg -1  1  1\n")
    names, files, labels = tf.read_attr_table(table)
    assert names == ["Smiling", "Male", "Bangs"] and files == ["000001.jpg", "000002.jpg"]
    assert labels.tolist() == [[1, 0, 0], [0, 1, 1]]
    table.write_text("2\nSmiling Male\n000001.jpg 1\n")
    with pytest.raises(InputError, match="announces 2 rows"):
        tf.read_attr_table(table)
    table.write_text("Smiling Male\n000001.jpg 1 yes\n")
    with pytest.raises(InputError, match="row 1"):
        tf.read_attr_table(table)
    with pytest.raises(InputError, match="cannot read"):
        tf.read_attr_table(tmp_path / "missing.txt")
