"""`noisegroup.lns.segment` (one call: a model and images -> groups) against the pipeline, its bad input, and the
commands that use it: `experiments.segment` on a folder and on a CelebAMask-HQ layout, `experiments.train:celeba_quick`."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from datasets import good_gestalt as gg
from noisegroup import lns
from noisegroup.errors import BadInputError
from noisegroup.lns import cluster, sweep

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "pretrained" / "vae_proximity.npz"


@pytest.fixture(scope="module")
def model():
    return lns.load_model(WEIGHTS)


@pytest.fixture(scope="module")
def proximity():
    return gg.generate("proximity", "test", limit=10)


def pipeline_labels(model, images, masks, key, method, noise_std=0.1, n=5, image_chunk=25):
    """The experiment pipeline's labels of seed 0 at one (sigma, N): `sweep.evaluate`, as `segment_model` calls it."""
    graphdef, params = model
    settings = sweep.SweepSettings(noise_stds=(noise_std,), num_noise_samples=(n,), method=method,
                                   image_chunk=image_chunk)
    stacked = jax.tree.map(lambda v: v[None], params)
    return sweep.evaluate(graphdef, stacked, images, masks, key, settings, keep_labels=True).labels[0, 0, 0]


@pytest.mark.parametrize("method,count,chunk", [("kmeans", 9, 3), ("ward", 6, 3)])
def test_segment_equals_the_pipeline_on_the_same_settings_and_key(model, proximity, method, count, chunk):
    images, masks = proximity.images[:count], proximity.masks[:count]
    key = jax.random.key(3)
    ks = cluster.num_clusters_from_masks(masks)
    seg = lns.segment(model, images, key=key, num_groups=ks, noise_std=0.1, num_noise_samples=5, clustering=method,
                      image_chunk=chunk, return_features=True)
    np.testing.assert_array_equal(seg.labels, pipeline_labels(model, images, masks, key, method, image_chunk=chunk))
    np.testing.assert_array_equal(seg.num_groups, ks)
    assert seg.features.shape == (count, 64 * 64, 3 * 4)
    # a different key draws different noise (so the check above can fail)
    other = lns.segment(model, images[:chunk], key=jax.random.key(4), num_groups=ks[:chunk], num_noise_samples=5,
                        clustering=method, return_features=True)
    assert not np.allclose(other.features, seg.features[:chunk])


def test_estimated_groups_are_what_the_labels_hold(model, proximity):
    seg = lns.segment(model, proximity.images[:4], key=jax.random.key(0), num_groups=None, num_noise_samples=5,
                      k_max=5, workers=1)
    assert seg.labels.shape == (4, 64, 64) and seg.labels.dtype == np.int32
    for labels, k in zip(seg.labels, seg.num_groups):
        assert 2 <= k <= 5
        assert len(np.unique(labels)) == k


def test_images_of_another_size_are_refused_or_resized_on_request(model, proximity):
    small = proximity.images[:2, ::2, ::2]
    with pytest.raises(BadInputError, match=r"\[32, 32, 3\].*\[64, 64, 3\].*resize"):
        lns.segment(model, small, num_groups=2)
    seg = lns.segment(model, small, num_groups=2, resize=True, num_noise_samples=3, clustering="kmeans")
    assert seg.labels.shape == (2, 64, 64)
    as_bytes = np.round(proximity.images[:2] * 255).astype(np.uint8)  # uint8 images are divided by 255
    seg8 = lns.segment(model, as_bytes, num_groups=2, num_noise_samples=3, clustering="kmeans")
    assert seg8.labels.shape == (2, 64, 64)


@pytest.mark.parametrize("kwargs,message", [
    ({"num_groups": 0}, r"num_groups must be in \[1, 4096\].*got 0"),
    ({"num_groups": 4097}, r"got 4097"),
    ({"num_groups": 2.5}, r"num_groups must be an integer"),
    ({"num_groups": True}, r"num_groups must be an integer"),
    ({"num_groups": [2, 3, 4]}, r"one per image \(2\)"),
    ({"noise_std": 0.0}, r"noise_std must be a finite number > 0"),
    ({"num_noise_samples": 1}, r"num_noise_samples must be an integer >= 2"),
    ({"clustering": "dbscan"}, r"unknown clustering method 'dbscan'"),
    ({"estimator": "elbow"}, r"elbow"),
    ({"k_max": 1}, r"k_max"),
])
def test_bad_settings_are_named(model, proximity, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lns.segment(model, proximity.images[:2], **kwargs)


def test_load_model_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        lns.load_model(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="not a training workdir"):
        lns.load_model(tmp_path)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 1\)"):
        lns.load_model(WEIGHTS, seed=1)


def write_folder(folder: Path, count: int = 3) -> list[np.ndarray]:
    """A few 64 x 64 PNGs of Good Gestalt test images (exact in PNG) and their masks under the same names."""
    data = gg.generate("kanizsa", "test", limit=count)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(count):
        Image.fromarray(np.round(data.images[i] * 255).astype(np.uint8)).save(folder / "images" / f"img_{i}.png")
        Image.fromarray(data.masks[i]).save(folder / "masks" / f"img_{i}.png")
    return data


def run(module: str, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def test_the_segment_command_on_a_folder_writes_overlays_and_a_summary(tmp_path):
    data = write_folder(tmp_path)
    out = tmp_path / "out"
    done = run("experiments.segment", f"--images={tmp_path / 'images'}", f"--masks={tmp_path / 'masks'}",
               f"--model={ROOT / 'pretrained' / 'vae_kanizsa.npz'}", f"--out={out}", "--num_noise_samples=5",
               "--num_groups=0", "--k_max=4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "segmented 3 images" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["images"]] == [f"img_{i}.png" for i in range(3)]
    for row in summary["images"]:
        assert 2 <= row["num_groups"] <= 4 and -1 <= row["ari"] <= 1
    overlay = np.asarray(Image.open(out / "overlays" / "img_0.png"))
    assert overlay.shape == (256, 512, 3)  # the image beside its groups, 4x
    # the left half is the input image, upscaled
    np.testing.assert_allclose(overlay[::4, :256:4] / 255, data.images[0], atol=1 / 255 + 1e-6)
    assert (out / "pairs.png").exists() and (out / "summary.csv").read_text().startswith("name,num_groups,ari")
    bad = run("experiments.segment", f"--images={tmp_path / 'nothing'}",
              f"--model={ROOT / 'pretrained' / 'vae_kanizsa.npz'}", f"--out={out}")
    assert bad.returncode == 2 and "nothing" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def celeba_hq(tmp_path_factory) -> Path:
    """A CelebAMask-HQ layout with what the default layout reads for the test split (images 0-99 and their parts)
    and for a few training steps (valid 100-101, train 400-403): 1024 x 1024 JPEGs, 512 x 512 part PNGs."""
    from datasets.images import celeba

    root = tmp_path_factory.mktemp("CelebAMask-HQ")
    (root / celeba.HQ_IMAGE_DIR).mkdir()
    (root / celeba.HQ_MASK_DIR / "0").mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512]
    for j in [*range(102), *range(400, 404)]:
        face = (yy - 300) ** 2 + (xx - 256) ** 2 < (120 + j % 20) ** 2
        hair = ((yy - 220) ** 2 + (xx - 256) ** 2 < 170 ** 2) & ~face & (yy < 300)
        pixels = np.zeros((512, 512, 3), np.uint8) + rng.integers(0, 60, 3, dtype=np.uint8)
        pixels[face], pixels[hair] = (210, 160, 130), (60, 40, 20)
        Image.fromarray(pixels).resize((1024, 1024), Image.Resampling.NEAREST).save(
            root / celeba.HQ_IMAGE_DIR / f"{j}.jpg", quality=90)
        if j < 100:
            for part, region in (("skin", face), ("hair", hair)):
                Image.fromarray(np.where(region, 255, 0).astype(np.uint8)).convert("RGB").save(
                    root / celeba.HQ_MASK_DIR / "0" / f"{j:05d}_{part}.png")
    return root


def test_train_celeba_quick_then_segment_the_celeba_test_split(celeba_hq, tmp_path):
    env = {**__import__("os").environ, "NOISEGROUP_DATA_DIR": str(tmp_path / "cache")}
    workdir = tmp_path / "vae_celeba"
    done = run("experiments.train", "--config=experiments/configs/train.py:celeba_quick", "--config.model=vae",
               f"--config.data_dir={celeba_hq}", "--config.train_limit=4", "--config.valid_limit=2",
               "--config.batch_size=2", "--config.num_steps=2", "--config.eval_every=2", f"--workdir={workdir}",
               env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((workdir / "config.json").read_text())
    assert (config["dataset"], config["latent_dim"], config["geco_goal"]) == ("celeba", 50, 0.0125)
    out = tmp_path / "seg"
    done = run("experiments.segment", "--dataset=celeba", f"--data_dir={celeba_hq}", f"--model={workdir}",
               "--num_groups=3", "--limit=4", "--num_noise_samples=3", "--clustering=kmeans", f"--out={out}", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 4 and summary["settings"]["num_groups"] == 3
    for row in summary["images"]:
        assert row["num_groups"] == 3 and {"ari_parts", "ari_face_hair_background"} <= set(row)
    missing = run("experiments.segment", "--dataset=celeba", f"--data_dir={tmp_path / 'nowhere'}",
                  f"--model={workdir}", f"--out={out}", env=env)
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr
