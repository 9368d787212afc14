"""Small models of the real architectures with random weights, saved as real checkpoints in the
formats users' pretrained weights come in, so tests load them through the same code path:
- open_clip CLIP and CoCa: a folder with open_clip_config.json + open_clip_model.safetensors
  (what open_clip's hub export writes; loaded via ``local-dir:``). The CLIP embedding is 768-d
  like ViT-L/14, so the real LAION aesthetic head applies to it.
- the multi-frame captioner: a SmolVLM (the default captioner's architecture) saved with
  ``save_pretrained`` with its processor.
- the fusion LLM: a Qwen2 causal LM (the default fuser's architecture) with a chat template.
Random weights say nothing about quality; they prove shapes, batching, loading and plumbing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

WORDS = ("a the of and in on with video clip shows person people car cars street road tree trees dog man "
         "woman walking driving sky city water slide text red blue green is are an at bike riding near "
         "two small large white black building park grass").split()


def word_tokenizer(extra_special: list[str]):
    """A word-level fast tokenizer (no download) with the special tokens a model needs."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<pad>", "<s>", "</s>", *extra_special]
    vocab = {t: i for i, t in enumerate(special + list(WORDS) + ["User", "Assistant", ":", ".", ","])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(r"<[^>]+>"), behavior="isolated"), pre_tokenizers.Whitespace()])
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": list(extra_special)})
    return fast


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] | capitalize }}:"
                 "{% if m['content'] is string %} {{ m['content'] }}{% else %}{% for c in m['content'] %}"
                 "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
                 "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


def _save_open_clip(model, model_cfg: dict, folder: Path) -> str:
    import safetensors.torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": {"mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD}}))
    return str(folder)


def tiny_clip(folder: Path, seed: int = 0) -> str:
    import open_clip
    import torch

    cfg = {"embed_dim": 768,
           "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    return _save_open_clip(model, cfg, Path(folder))


def tiny_coca(folder: Path, seed: int = 0) -> str:
    import open_clip
    import torch

    cfg = {"embed_dim": 64,
           "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32,
                          "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
           "text_cfg": {"context_length": 76, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                        "embed_cls": True, "output_tokens": True},
           "multimodal_cfg": {"context_length": 76, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                              "attn_pooler_heads": 2},
           "custom_text": True}
    torch.manual_seed(seed)
    model = open_clip.CoCa(**{k: v for k, v in cfg.items() if k != "custom_text"})
    # open_clip leaves CoCa's text decoder output at zero (all tokens tie, so decoding is
    # arbitrary): give every weight a seeded random value so the logits rank tokens.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1 and ("ln" in name or "norm" in name):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return _save_open_clip(model, cfg, Path(folder))


def tiny_vlm(folder: Path, seed: int = 0) -> str:
    import torch
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    tok = word_tokenizer(["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"])
    size = {"longest_edge": 64}
    proc = SmolVLMProcessor(image_processor=SmolVLMImageProcessor(do_image_splitting=False, size=size, max_image_size=size),
                            tokenizer=tok, video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
                            image_seq_len=4, chat_template=CHAT_TEMPLATE)
    cfg = SmolVLMConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=16),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=512),
        scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = SmolVLMForConditionalGeneration(cfg).eval()
    # Random weights: keep generation on words so captions are not empty.
    model.generation_config.suppress_tokens = [i for i in range(len(tok)) if tok.convert_ids_to_tokens(i).startswith("<")]
    model.generation_config.eos_token_id = None
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return str(folder)


def tiny_llm(folder: Path, seed: int = 0) -> str:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = word_tokenizer(["<end_of_utterance>"])
    tok.chat_template = CHAT_TEMPLATE
    cfg = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=1024,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).eval()
    model.generation_config.suppress_tokens = [i for i in range(len(tok)) if tok.convert_ids_to_tokens(i).startswith("<")]
    model.generation_config.eos_token_id = None
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def tiny_model_set(root: Path) -> dict[str, str]:
    """All four, built once into ``root`` (reused when already there)."""
    root = Path(root)
    marker = root / "models.json"
    if marker.exists():
        return json.loads(marker.read_text())
    out = {"clip": tiny_clip(root / "clip"), "coca": tiny_coca(root / "coca"),
           "vlm": tiny_vlm(root / "vlm"), "llm": tiny_llm(root / "llm")}
    marker.write_text(json.dumps(out))
    return out


def model_config_overrides(models: dict[str, str], aesthetic_head: str) -> dict:
    """Config sections pointing every model stage at the tiny models."""
    return {"clip_model": {"model": models["clip"], "pretrained": None, "aesthetic_head": aesthetic_head, "batch_size": 4},
            "caption": {"coca_model": models["coca"], "coca_pretrained": None, "coca_max_tokens": 8,
                        "vlm_model": models["vlm"], "vlm_max_tokens": 8, "vlm_frames": 3,
                        "fuser": {"backend": "transformers", "model": models["llm"], "max_new_tokens": 8}}}


WEIGHTS = Path(os.environ.get("VIDCURATE_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "weights"
AESTHETIC_MLP = str(WEIGHTS / "aesthetic" / "improved_mlp" / "sac+logos+ava1-l14-linearMSE.pth")
