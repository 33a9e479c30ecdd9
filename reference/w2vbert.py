"""w2v-bert-2.0 semantic features: HF ``Wav2Vec2BertModel``, first ``cfg.w2v_layer`` layers.

The issue allows the transformers implementation for the reference; the key names and config are
the released ``facebook/w2v-bert-2.0`` ones. Output = hidden_states[w2v_layer] (the output after
17 layers for the release), normalized with ``wav2vec2bert_stats.pt``: (x - mean) / sqrt(var).
Only the used layers are built; the later layers in ``model.safetensors`` are checked to exist
and skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from indextts_trt.runtime.indextts2.config import IndexTTSConfig

from .conformer import MASK_BIAS

from .checkpoint_io import (
    CheckpointError,
    load_pickled,
    load_strict,
    read_json,
    safetensors_load,
    safetensors_save,
    torch_save,
)

# The released facebook/w2v-bert-2.0 config's fields that shape the model. mask_time_prob 0.05 (the
# transformers default the release keeps) makes Wav2Vec2BertModel own ``masked_spec_embed``, a
# [hidden] spec-augment vector that save_pretrained writes and inference never reads: with it the
# random files hold exactly the released keys.
FULL_CONFIG = {
    "architectures": ["Wav2Vec2BertModel"], "model_type": "wav2vec2-bert", "hidden_size": 1024,
    "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096, "hidden_act": "swish",
    "hidden_dropout": 0.0, "activation_dropout": 0.0, "attention_dropout": 0.0, "feat_proj_dropout": 0.0,
    "final_dropout": 0.1, "layerdrop": 0.1, "layer_norm_eps": 1e-05, "initializer_range": 0.02,
    "feature_projection_input_dim": 160, "apply_spec_augment": False, "mask_time_prob": 0.05,
    "position_embeddings_type": "relative_key", "left_max_position_embeddings": 64,
    "right_max_position_embeddings": 8, "rotary_embedding_base": 10000, "max_source_positions": 5000,
    "conv_depthwise_kernel_size": 31, "conformer_conv_dropout": 0.1, "add_adapter": False,
    "use_intermediate_ffn_before_adapter": False, "output_hidden_size": 1024, "vocab_size": None,
    "torch_dtype": "float32",
}
PREPROCESSOR_CONFIG = {
    "feature_extractor_type": "SeamlessM4TFeatureExtractor", "feature_size": 80, "num_mel_bins": 80,
    "padding_side": "right", "padding_value": 1, "return_attention_mask": True, "sampling_rate": 16000,
    "stride": 2, "processor_class": "Wav2Vec2BertProcessor",
}


def w2v_config_dict(cfg: IndexTTSConfig, size: str) -> dict:
    d = dict(FULL_CONFIG)
    if size != "full":  # tiny: odd sizes, the released structure
        d.update(hidden_size=cfg.semantic_dim, output_hidden_size=cfg.semantic_dim, num_hidden_layers=cfg.w2v_layer + 1,
                 num_attention_heads=2, intermediate_size=37, conv_depthwise_kernel_size=5)
    return d


class W2VBertSemantic(nn.Module):
    def __init__(self, hf_config: dict, layers: int):
        super().__init__()
        from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

        conf = Wav2Vec2BertConfig.from_dict({**hf_config, "num_hidden_layers": layers})
        self.layers = layers
        self.model = Wav2Vec2BertModel(conf).eval()
        self.register_buffer("mean", torch.zeros(conf.hidden_size))
        self.register_buffer("std", torch.ones(conf.hidden_size))

    def forward(self, feats: Tensor, mask: Tensor | None = None) -> Tensor:
        """feats (B, T, 160), mask (B, T) bool/int (1 = valid) → (B, T, hidden) normalized features.

        The HF layers are driven directly with the same masking HF applies (padded frames zeroed
        before the layers, an additive attention bias, the conv module's padding mask), except
        that the bias is -1e4 instead of HF's ``finfo.min``: identical in fp32 whenever a row has
        a valid key, and a constant that survives fp16 in an exported graph. The mask matters:
        with an odd fbank frame count the last stacked frame is padding.
        """
        m = self.model
        h, _ = m.feature_projection(feats)
        attn_bias = conv_mask = None
        if mask is not None:
            keep = mask.to(h.dtype)  # (B, T)
            h = h * keep.unsqueeze(-1)
            attn_bias = ((1.0 - keep) * MASK_BIAS)[:, None, None, :]
            conv_mask = mask.to(torch.bool)
        for layer in m.encoder.layers:
            h = layer(h, attention_mask=attn_bias, conv_attention_mask=conv_mask)
            h = h[0] if isinstance(h, tuple) else h
        return (h - self.mean) / self.std


def write_random_w2vbert(cfg: IndexTTSConfig, out_dir: str | Path, seed: int, size: str) -> None:
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    torch.manual_seed(seed)
    d = w2v_config_dict(cfg, size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = Wav2Vec2BertModel(Wav2Vec2BertConfig.from_dict(d))
    (out_dir / "config.json").write_text(json.dumps(d, indent=2))
    (out_dir / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    safetensors_save({k: v.detach().float() for k, v in model.state_dict().items()}, out_dir / "model.safetensors")


def write_random_w2v_stats(cfg: IndexTTSConfig, path: str | Path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(cfg.semantic_dim, generator=g) * 2.9 - 1.9  # like the release: [-1.9, 1.0]
    var = torch.rand(cfg.semantic_dim, generator=g) * 3.0 + 0.1
    torch_save({"mean": mean, "var": var}, path)


def load_w2vbert(model_dir: str | Path, stats_path: str | Path, cfg: IndexTTSConfig) -> W2VBertSemantic:
    model_dir = Path(model_dir)
    conf_path = model_dir / "config.json"
    hf = read_json(conf_path, "w2v-bert config")
    if hf.get("hidden_size") != cfg.semantic_dim:
        raise CheckpointError(f"{conf_path}: hidden_size {hf.get('hidden_size')} != semantic_codec.hidden_size "
                              f"{cfg.semantic_dim} in config.yaml")
    if hf.get("num_hidden_layers", 0) < cfg.w2v_layer:
        raise CheckpointError(f"{conf_path}: {hf.get('num_hidden_layers')} layers, but layer {cfg.w2v_layer} is read")
    model = W2VBertSemantic(hf, cfg.w2v_layer)
    weights = model_dir / "model.safetensors"
    sd = safetensors_load(weights, "w2v-bert weights")
    later = re.compile(r"^encoder\.layers\.(\d+)\.")
    sd = {k: v for k, v in sd.items() if not ((m := later.match(k)) and int(m.group(1)) >= cfg.w2v_layer)}
    sd = {k: v for k, v in sd.items() if not k.startswith(("adapter.", "intermediate_ffn."))}
    # masked_spec_embed: training-only; present in the release, absent from older random files
    load_strict(model.model, sd, str(weights), optional=("masked_spec_embed",), ignore_unexpected=("masked_spec_embed",))
    stats, stats_path = load_pickled(stats_path, "w2v-bert stats")
    if not isinstance(stats, dict) or "mean" not in stats or "var" not in stats:
        raise CheckpointError(f"{stats_path}: expected a dict with 'mean' and 'var'")
    for k in ("mean", "var"):
        if tuple(stats[k].shape) != (cfg.semantic_dim,):
            raise CheckpointError(f"{stats_path}['{k}']: expected [{cfg.semantic_dim}], got {list(stats[k].shape)}")
    model.mean.copy_(stats["mean"].float())
    model.std.copy_(torch.sqrt(stats["var"].float()))
    return model.eval()
