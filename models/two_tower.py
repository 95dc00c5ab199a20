"""The two-tower contrastive model: image and text towers, projection heads, temperature (and bias)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models.captioner import PrefixCaptioner
from models.denoiser import EditDenoiser
from models.dense_heads import GAMMA_INIT, ContextDecoder, DenseSettings, SegmentationHead, score_map
from models.heads import MlpHead
from models.language_model import DecoderLM, build_language_model
from models.mend import MendModel
from models.region_heads import GroundingHead, Prompter, roi_mean
from models.text_towers import text_tower
from models.video import MultiFrameIntegration, VideoSpecificPrompt
from models.vit import VisionTransformer

# Projections from a tower's pooled output to the joint space (config.model.image_projection /
# text_projection): a bias-free Dense (CLIP), a Dense with bias (SigLIP's text head), or none (SigLIP's
# image tower: its MAP head's output is the embedding; embed_dim must then be the tower's width).
PROJECTIONS = ("linear", "affine", "none")


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-6) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True) + eps)


class TwoTower(nn.Module):
    """CLIP-style model. Call with images and/or tokens; returns a dict of what was asked for.

    Outputs (B = batch, D = embed_dim): `image_embedding` / `text_embedding` [B, D]
    L2-normalised, `image_features` / `text_features` [B, D] before normalisation,
    `image_tokens` [B, N, width], `logit_scale` (log temperature, scalar) and
    `logit_bias` (scalar; SigLIP). `image_projection` / `text_projection` name each tower's projection
    (PROJECTIONS). `encode_image(images, patch_embeddings=True)` adds
    `patch_embedding` [B, N, D]: each patch token through the image projection, L2-normalised
    (DreamLIP). With `head_dim` > 0 (ProtoCLIP) the model also has an MLP head per tower (hidden
    width `head_hidden_dim`) and a second temperature: `image_head_embedding` /
    `text_head_embedding` [B, head_dim] L2-normalised, and `logit_scale_proto`; with head_dim 0 (the
    default) none of these params exist. With `region_depth` > 0 (CLOC) the model also has a box
    prompter and a grounding head over the image tower's patch tokens (models/region_heads.py):
    `encode_regions(image_tokens, boxes)` gives `region_embedding` [B, R, D], `ground(image_tokens,
    caption_embedding)` boxes [B, R, 4]; `roi_embedding(image_tokens, boxes)` is the prompter-free baseline.
    With `dense` settings (DenseCLIP, models/dense_heads.py) the model also has learnable prompt context, a
    context decoder and a segmentation head: `segment(images, class_tokens)`.
    With `video_frames` = T > 0 (X-CLIP) the model also has the video modules of models/video.py:
    `encode_video(videos [B, T, H, W, 3])` and `prompt_text(text_features, video_tokens)`;
    `frame_mean_embedding(videos)` is the baseline any model has (plain CLIP on each frame, averaged).
    With `text_views` = V > 0 and `text_mlm_head` (SPACE-2): `encode_text_views(tokens)` adds `view_embedding`
    [B, V, D], and `mlm_logits(tokens)` gives [B, L, vocab]; the vocabulary then holds the [MASK] row.
    With `text_tag_classes` = C > 0 (CLIMB's word-class objective) `tag_logits(tokens)` gives [B, L, C].
    With `image_classes` = C > 0 (COCONUT's classifier) the model has a linear head over the image features:
    `class_logits` [B, C] beside the image outputs.
    """

    image: ml_collections.ConfigDict
    text: ml_collections.ConfigDict
    embed_dim: int
    vocab_size: int
    logit_scale_init: float
    logit_bias_init: float = 0.0
    dtype: jnp.dtype = jnp.float32
    remat: bool = False
    scan_layers: bool = False  # each tower's blocks as one lax.scan (models/layer_scan.py)
    attention: str = "dense"  # the transformer towers' attention kernel (models/transformer.py: ATTENTION)
    layer_norm_dtype: jnp.dtype = jnp.float32  # their LayerNorms' outputs and, in the ViT, residual stream
    # Towers ("image_tower", "text_tower") whose outputs stop gradients: a locked tower (LiT) costs no backward pass.
    locked: tuple[str, ...] = ()
    head_hidden_dim: int = 0
    head_dim: int = 0
    # SimCSE's MLP over the text features: "none", "train" (training mode only, --mlp_only_train) or "always".
    text_mlp_head: str = "none"
    image_projection: str = "linear"
    text_projection: str = "linear"
    region_depth: int = 0  # CLOC's prompter and grounding head: cross-attention blocks each; 0 = none
    dense: DenseSettings | None = None  # DenseCLIP's heads; None = none
    video_frames: int = 0  # X-CLIP's video modules for clips of this many frames; 0 = none
    text_views: int = 0  # SPACE-2's per-view heads over the text features; 0 = none
    text_mlm_head: bool = False  # SPACE-2's masked-language-model head, tied to the text tower's token embedding
    text_tag_classes: int = 0  # CLIMB's part-of-speech head over each position's state; 0 = none
    image_classes: int = 0  # COCONUT's linear classifier over the image features; 0 = none

    def setup(self):
        transformer = dict(attention=self.attention, layer_norm_dtype=self.layer_norm_dtype)
        execution = dict(remat=self.remat, scan_layers=self.scan_layers, dtype=self.dtype)
        self.image_tower = VisionTransformer(**self.image, **execution, **transformer)
        self.text_tower = text_tower(self.text, self.vocab_size, **execution, **transformer)
        self.image_projector = self._projection(self.image_projection, "image_projection")
        self.text_projector = self._projection(self.text_projection, "text_projection")
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(self.logit_scale_init), (), jnp.float32)
        self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.logit_bias_init), (), jnp.float32)
        if self.text_mlp_head != "none":
            self.text_mlp = nn.Dense(self.embed_dim, dtype=self.dtype)
        if self.head_dim:
            self.image_head = MlpHead(self.head_hidden_dim, self.head_dim, dtype=self.dtype)
            self.text_head = MlpHead(self.head_hidden_dim, self.head_dim, dtype=self.dtype)
            self.logit_scale_proto = self.param(
                "logit_scale_proto", nn.initializers.constant(self.logit_scale_init), (), jnp.float32
            )
        if self.region_depth:
            heads = self.image["heads"]
            self.prompter = Prompter(self.region_depth, heads, self.dtype)
            self.grounding_head = GroundingHead(self.region_depth, heads, self.dtype)
        if self.video_frames:
            activation = self.image.get("activation", "gelu_tanh")
            self.frame_integration = MultiFrameIntegration(self.video_frames, activation, self.dtype)
            self.video_prompt = VideoSpecificPrompt(self.dtype)
            self.prompt_visual_norm = nn.LayerNorm()
            self.prompt_visual_projection = nn.Dense(self.embed_dim, use_bias=False, dtype=self.dtype)
        if self.dense:
            self._setup_dense(self.dense)
        if self.text_views:
            self.text_view_heads = nn.Dense(self.text_views * self.embed_dim, dtype=self.dtype)
        if self.text_mlm_head:
            self.mlm_transform = nn.Dense(self.text["width"], dtype=self.dtype)
            self.mlm_norm = nn.LayerNorm(epsilon=self.text.get("layer_norm_eps", 1e-12))
            self.mlm_bias = self.param("mlm_bias", nn.initializers.zeros, (self.vocab_size,), jnp.float32)
        if self.text_tag_classes:
            self.tag_transform = nn.Dense(self.text["width"], dtype=self.dtype)
            self.tag_norm = nn.LayerNorm(epsilon=self.text.get("layer_norm_eps", 1e-12))
            self.tag_output = nn.Dense(self.text_tag_classes, dtype=jnp.float32)
        if self.image_classes:
            self.class_head = nn.Dense(self.image_classes, dtype=jnp.float32)

    def _setup_dense(self, d: DenseSettings):
        shape = (d.context_tokens, self.text["width"])
        self.prompt_context = self.param("prompt_context", nn.initializers.normal(0.02), shape, jnp.float32)
        if d.prompting != "none":
            out_dim = self.embed_dim if d.prompting == "post" else self.text["width"]
            self.context_decoder = ContextDecoder(d.decoder_depth, d.decoder_width, d.decoder_heads, out_dim)
        if d.prompting == "post":
            gamma = nn.initializers.constant(GAMMA_INIT)
            self.context_gamma = self.param("context_gamma", gamma, (self.embed_dim,), jnp.float32)
        self.segmentation_head = SegmentationHead(d.head_width, d.classes)

    def _projection(self, kind: str, name: str):
        if kind == "none":
            return lambda x: x
        return nn.Dense(self.embed_dim, use_bias=kind == "affine", dtype=self.dtype, name=name)

    def encode_image(self, images: jax.Array, patch_embeddings: bool = False) -> dict[str, jax.Array]:
        pooled, tokens = self._maybe_locked("image_tower", self.image_tower(images))
        features = self.image_projector(pooled).astype(jnp.float32)
        out = {"image_features": features, "image_embedding": l2_normalize(features), "image_tokens": tokens}
        if patch_embeddings:
            out["patch_embedding"] = l2_normalize(self.image_projector(tokens).astype(jnp.float32))
        return out

    def encode_regions(self, image_tokens: jax.Array, boxes: jax.Array) -> jax.Array:
        """image_tokens [B, N, W], boxes [B, R, 4] -> region_embedding [B, R, D] (normalised), through the prompter
        and the image projection."""
        return l2_normalize(self.image_projector(self.prompter(image_tokens, boxes)).astype(jnp.float32))

    def ground(self, image_tokens: jax.Array, caption_embedding: jax.Array) -> jax.Array:
        """image_tokens [B, N, W], caption_embedding [B, R, D] -> boxes [B, R, 4] (x0, y0, x1, y1 in [0, 1])."""
        return self.grounding_head(image_tokens, caption_embedding)

    def roi_embedding(self, image_tokens: jax.Array, boxes: jax.Array) -> jax.Array:
        """The baseline: the patch tokens under each box, overlap-weighted, through the image projection,
        normalised [B, R, D]."""
        return l2_normalize(self.image_projector(roi_mean(image_tokens, boxes)).astype(jnp.float32))

    def segment(self, images: jax.Array, class_tokens: jax.Array) -> dict[str, jax.Array]:
        """images [B, H, W, 3], class-name tokens [K, L] (L + context_tokens <= max_len) -> `image_embedding`
        [B, D], `score_map` [B, h, w, K] (the h x w patch grid) and `seg_logits` [B, h', w', K] (h' the finest
        conv-stem stage's side, else h). Dense features z are the patch tokens through the image projection."""
        pooled, tokens, stages = self._maybe_locked("image_tower", self.image_tower(images, stages=True))
        features = self.image_projector(pooled).astype(jnp.float32)
        dense = self.image_projector(tokens).astype(jnp.float32)
        batch, n, _ = dense.shape
        side = int(round(n**0.5))
        text = self._class_text(class_tokens, jnp.concatenate([features[:, None], dense], axis=1))
        scores = score_map(dense.reshape(batch, side, side, -1), text)
        top = tokens.reshape(batch, side, side, -1)
        if self.dense.score_concat:
            top = jnp.concatenate([top, scores.astype(top.dtype)], axis=-1)
        logits = self.segmentation_head(top, stages).astype(jnp.float32)
        return {"image_embedding": l2_normalize(features), "score_map": scores, "seg_logits": logits}

    def _class_text(self, class_tokens: jax.Array, context: jax.Array) -> jax.Array:
        """Class embeddings t_k [B, K, D] of prompts [start][P context vectors][class name][end], given the visual
        context V = [z_global; z] [B, 1 + h w, D]: post-model, t_k + gamma * ContextDecoder(t, V); pre-model, the
        context vectors are ContextDecoder(context vectors, V), one prompt set per image."""
        d, (classes, length), batch = self.dense, class_tokens.shape, context.shape[0]
        # The text tower is called directly, not through _maybe_locked: the optimizer's mask keeps it frozen, and
        # the gradient must pass through it to the prompt context.
        if d.prompting == "pre":
            prompt = jnp.broadcast_to(self.prompt_context, (batch, *self.prompt_context.shape))
            prompt = jnp.repeat(self.context_decoder(prompt, context), classes, axis=0)  # [B K, P, width]
            tokens = jnp.broadcast_to(class_tokens, (batch, classes, length)).reshape(batch * classes, length)
            pooled, _ = self.text_tower(tokens, context=prompt)
            return self.text_projector(pooled).astype(jnp.float32).reshape(batch, classes, -1)
        prompt = jnp.broadcast_to(self.prompt_context, (classes, *self.prompt_context.shape))
        pooled, _ = self.text_tower(class_tokens, context=prompt)
        text = jnp.broadcast_to(self.text_projector(pooled).astype(jnp.float32), (batch, classes, self.embed_dim))
        if d.prompting == "post":
            text = text + self.context_gamma * self.context_decoder(text, context)
        return text

    def encode_video(self, videos: jax.Array) -> dict[str, jax.Array]:
        """videos [B, T, H, W, 3] -> `video_features` and `video_embedding` (normalised) [B, D] (cross-frame
        tower, each frame's pooled output projected, MIT) and `video_tokens` [B, N, D]: the patch tokens in the
        joint space (X-CLIP's prompts_visual_ln and _proj), averaged over the frames, for the prompt."""
        batch, frames = videos.shape[:2]
        pooled, tokens = self._maybe_locked(
            "image_tower", self.image_tower(videos.reshape(-1, *videos.shape[2:]), frames)
        )
        frame_features = self.image_projector(pooled).astype(jnp.float32).reshape(batch, frames, -1)
        features = self.frame_integration(frame_features)
        visual = self.prompt_visual_projection(self.prompt_visual_norm(tokens)).astype(jnp.float32)
        return {
            "video_features": features,
            "video_embedding": l2_normalize(features),
            "video_tokens": visual.reshape(batch, frames, *visual.shape[1:]).mean(axis=1),
        }

    def prompt_text(self, text_features: jax.Array, video_tokens: jax.Array) -> jax.Array:
        """Video-specific prompting: text features [B, C, D] (each clip's own candidates), video_tokens
        [B, N, D] -> normalised [B, C, D] embeddings of text + prompt(text, the clip's tokens)."""
        return l2_normalize(text_features + self.video_prompt(text_features, video_tokens))

    def frame_mean_embedding(self, videos: jax.Array) -> jax.Array:
        """The baseline: videos [B, T, H, W, 3] -> [B, D], each frame alone through the image tower (no
        messages), its normalised embedding averaged over the frames and normalised again."""
        frames = self.encode_image(videos.reshape(-1, *videos.shape[2:]))["image_embedding"]
        return l2_normalize(frames.reshape(*videos.shape[:2], -1).mean(axis=1))

    def head_embeddings(self, image_features: jax.Array, text_features: jax.Array) -> dict[str, jax.Array]:
        """The ProtoCLIP heads on [B, D] tower features (needs head_dim > 0): normalised [B, head_dim] each."""
        return {
            "image_head_embedding": l2_normalize(self.image_head(image_features)),
            "text_head_embedding": l2_normalize(self.text_head(text_features)),
            "logit_scale_proto": self.logit_scale_proto,
        }

    def _maybe_locked(self, tower: str, outputs):
        return jax.lax.stop_gradient(outputs) if tower in self.locked else outputs

    def encode_text(self, tokens: jax.Array, deterministic: bool = True) -> dict[str, jax.Array]:
        """`deterministic=False` is training mode (SimCSE): dropout on (rng stream "dropout"), and with
        text_mlp_head "train" the features come out of the Dense+tanh head, which inference skips."""
        outputs = self.text_tower(tokens) if deterministic else self.text_tower(tokens, deterministic=False)
        pooled, _ = self._maybe_locked("text_tower", outputs)
        features = self.text_projector(pooled).astype(jnp.float32)
        if self.text_mlp_head != "none":
            head = jnp.tanh(self.text_mlp(features).astype(jnp.float32))  # computed always, so init creates it
            features = head if self.text_mlp_head == "always" or not deterministic else features
        return {"text_features": features, "text_embedding": l2_normalize(features)}

    def encode_text_views(self, tokens: jax.Array, deterministic: bool = True) -> dict[str, jax.Array]:
        """encode_text's outputs and `view_embedding` [B, V, D]: SPACE-2's heads, normalize(tanh(W_v h)) for each of
        the `text_views` views, h the text features."""
        out = self.encode_text(tokens, deterministic)
        heads = jnp.tanh(self.text_view_heads(out["text_features"]).astype(jnp.float32))
        return out | {"view_embedding": l2_normalize(heads.reshape(tokens.shape[0], self.text_views, self.embed_dim))}

    def mlm_logits(self, tokens: jax.Array, deterministic: bool = True) -> jax.Array:
        """tokens [B, L] -> [B, L, vocab] masked-token logits: each position's state through dense, exact GELU and
        LayerNorm, then the tower's token embedding (tied, as BERT's and SPACE-2's) plus a bias."""
        _, states = self.text_tower(tokens, deterministic=deterministic)
        x = self.mlm_norm(jax.nn.gelu(self.mlm_transform(states), approximate=False)).astype(jnp.float32)
        embedding = self.text_tower.variables["params"]["token_embedding"]["embedding"]
        return x @ embedding.T.astype(jnp.float32) + self.mlm_bias

    def tag_logits(self, tokens: jax.Array, deterministic: bool = True) -> jax.Array:
        """tokens [B, L] -> [B, L, text_tag_classes]: each position's state through dense, exact GELU, LayerNorm and
        a linear layer of its own (RoBERTa's LM head over the tag classes, CLIMB's POS head)."""
        _, states = self.text_tower(tokens, deterministic=deterministic)
        x = self.tag_norm(jax.nn.gelu(self.tag_transform(states), approximate=False)).astype(jnp.float32)
        return self.tag_output(x)

    def __call__(self, images: jax.Array | None = None, tokens: jax.Array | None = None) -> dict[str, jax.Array]:
        out = {"logit_scale": self.logit_scale, "logit_bias": self.logit_bias}
        if images is not None:
            out.update(self.encode_image(images))
            if self.image_classes:
                out["class_logits"] = self.class_head(out["image_features"])
        if tokens is not None:
            out.update(self.encode_text(tokens))
        if self.head_dim and images is not None and tokens is not None:
            out.update(self.head_embeddings(out["image_features"], out["text_features"]))
        if self.region_depth and images is not None and tokens is not None:  # so that init creates their params
            whole = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0, 1.0]), (images.shape[0], 1, 4))
            out["region_embedding"] = self.encode_regions(out["image_tokens"], whole)
            out["grounded_box"] = self.ground(out["image_tokens"], out["text_embedding"][:, None])
        if self.dense and images is not None and tokens is not None:
            names = tokens[:1, : tokens.shape[1] - self.dense.context_tokens]
            out.update(self.segment(images, jnp.broadcast_to(names, (self.dense.classes, names.shape[1]))))
        if self.text_views and tokens is not None:  # so that init creates SPACE-2's heads
            out["view_embedding"] = self.encode_text_views(tokens)["view_embedding"]
        if self.text_mlm_head and tokens is not None:
            out["mlm_logits"] = self.mlm_logits(tokens)
        if self.text_tag_classes and tokens is not None:
            out["tag_logits"] = self.tag_logits(tokens)
        if self.video_frames and images is not None and tokens is not None:
            video = self.encode_video(
                jnp.broadcast_to(images[:, None], (images.shape[0], self.video_frames, *images.shape[1:]))
            )
            out.update(video)
            out["prompted_text_embedding"] = self.prompt_text(out["text_features"][:, None], video["video_tokens"])
        return out


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> TwoTower | DecoderLM | PrefixCaptioner:
    """The model of config.model.kind: the TwoTower, the decoder language model (models/language_model.py),
    that decoder reading a prefix mapped from one embedding per example (models/captioner.py: LiMBeR, CLOSE), MEND
    (models/mend.py), or SuperEdit's editing denoiser (models/denoiser.py)."""
    m = config.model
    if m.attention == "cudnn" and jax.default_backend() != "gpu":
        raise ValueError(
            f"config.model.attention='cudnn' needs an NVIDIA GPU, and JAX's backend is {jax.default_backend()}; "
            "set config.model.attention='dense'."
        )
    if m.kind == "decoder":
        return build_language_model(config, vocab_size)
    if m.kind == "mend":  # a distiller of demonstrations for the language model (models/mend.py)
        d, k = config.mend.distiller, config.mend.virtual_tokens
        lm = build_language_model(config, vocab_size)
        # the language model's switches (norm, positions, MLP, ...) at the distiller's sizes, k more ids
        distiller = lm.clone(vocab_size=lm.vocab_size + k, width=d.width, depth=d.depth, heads=d.heads,
                             max_len=d.max_len, parent=None)  # fmt: skip
        return MendModel(lm, distiller, k)
    if m.kind == "denoiser":  # SuperEdit's editing model, its instruction read by a text tower of config.model.text
        return EditDenoiser(m.text, vocab_size, config.superedit.width)
    if m.kind == "captioner":
        options = config[config.objective]
        dropout = options.get("dropout", 0.0)  # LiMBeR's on the prefix; CLOSE's regulariser is its noise
        return PrefixCaptioner(build_language_model(config, vocab_size), options.prefix_tokens, dropout)
    space2, climb = config.objective == "space2", config.objective == "climb"
    mlm = (space2 and config.space2.mlm_weight > 0) or climb or config.objective == "pcp"
    return TwoTower(
        image=m.image,
        text=m.text,
        embed_dim=m.embed_dim,
        vocab_size=vocab_size + mlm,  # SPACE-2's, CLIMB's and PCP's [MASK]: one row after the tokenizer's vocabulary
        logit_scale_init=m.logit_scale_init,
        logit_bias_init=m.logit_bias_init,
        dtype=jnp.dtype(m.dtype),
        remat=m.remat,
        scan_layers=m.scan_layers,
        attention=m.attention,
        layer_norm_dtype=jnp.dtype(m.layer_norm_dtype),
        locked=tuple(p for p in config.optimizer.get("frozen_prefixes", ()) if p in ("image_tower", "text_tower")),
        head_hidden_dim=m.head_hidden_dim,
        head_dim=m.head_dim,
        text_mlp_head=m.text_mlp_head,
        image_projection=m.image_projection,
        text_projection=m.text_projection,
        region_depth=m.region_depth,
        dense=dense_settings(config),
        video_frames=m.video_frames,
        text_views=len(config.space2.views) if space2 else 0,
        text_mlm_head=mlm,
        text_tag_classes=1 + len(config.climb.pos_classes) if climb and pos_task(config.climb) else 0,
        image_classes=m.image_classes,
    )


def pos_task(climb: ml_collections.ConfigDict) -> bool:
    """CLIMB's word-class objective runs at some step (config.climb.pos_window is not empty)."""
    return climb.pos_window[1] > climb.pos_window[0]


def dense_settings(config: ml_collections.ConfigDict) -> DenseSettings | None:
    """DenseCLIP's heads from config.denseclip when the objective is denseclip, else None."""
    if config.objective != "denseclip":
        return None
    d = config.denseclip
    return DenseSettings(
        len(d.class_names), d.context_tokens, d.prompting, d.decoder_depth, d.decoder_width, d.decoder_heads,
        d.head_width, d.score_concat,
    )  # fmt: skip
