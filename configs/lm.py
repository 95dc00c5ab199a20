"""A decoder-only language model (models/language_model.py) trained by next-token cross-entropy (losses/language.py).

    python main.py --config=configs/lm.py --workdir=runs/lm
    python main.py --config=configs/lm.py --workdir=runs/lm --mode=generate --prompt="there is a red"
    # your text: one passage per line (.txt) or JSON Lines {"text": ...}, and held-out text for perplexity
    python main.py --config=configs/lm.py --workdir=runs/mine --config.data.name=sentences \
        --config.data.path=train.txt --config.evals.language.path=valid.txt
    # from a Hugging Face LlamaForCausalLM folder and its tokenizer.model (docs/pretrained.md)
    python main.py --config=configs/lm.py:pretrained=/path/to/llama_folder --workdir=runs/llama_ft

Trains on the embedded corpus (input_pipeline/lm_text.py: shapes prose, and facts about made-up objects with
questions on them) and reports held-out perplexity, each decoding strategy's repetition, diversity and
coherence (the `language` evaluator) and knowledge-conflict accuracy of greedy, CAD and AdaCAD
(`knowledge_conflict`); evaluation/language_eval.py, docs/language.md. config.generation sets the decoding of
--mode=generate (models/generation.py).
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator


def language_model(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Settings every language-model config shares: the decoder, the embedded corpus, its evaluators."""
    config.objective = "lm"
    config.model.kind = "decoder"
    config.data.name = "lm_text"
    # ~4 GFLOP a step: a few minutes on a 2-core CPU, enough to memorise the facts.
    config.model.decoder.update(width=96, depth=3, heads=4, max_len=48)
    config.batch_size = 32
    config.total_steps = 1500
    config.eval_every_steps = 1500
    config.checkpoint_every_steps = 500
    config.optimizer.learning_rate = 2e-3
    config.optimizer.warmup_steps = 100
    config.eval.num_examples = 200  # held-out texts for perplexity, and generation prompts
    config.eval.batch_size = 200
    config.evals = ml_collections.ConfigDict(
        {
            "language": evaluator("language", prefix=""),
            "knowledge_conflict": evaluator("knowledge_conflict", prefix=""),
        }
    )
    return config


def get_config(arg: str | None = None):
    """Argument `pretrained`: a Hugging Face LlamaForCausalLM folder (with its tokenizer.model) to start from."""
    arg = common.parse_arg(arg, pretrained="")
    config = language_model(common.get_base_config(None))
    return common.use_pretrained(config, arg.pretrained) if arg.pretrained else config


def llama_style(decoder: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.model.decoder switched to Llama 2's (and 1.5-Pints') architecture: RMSNorm (epsilon 1e-5), rotary
    positions, SwiGLU, grouped-query attention (half the heads as key-value heads), no biases, an untied output."""
    decoder.update(
        norm="rms_norm", norm_eps=1e-5, position="rope", mlp="swiglu", kv_heads=max(decoder.heads // 2, 1),
        bias=False, tie_embeddings=False,
    )  # fmt: skip
    return decoder


def captioner(config: ml_collections.ConfigDict, objective: str) -> ml_collections.ConfigDict:
    """Settings LiMBeR and CLOSE share (configs/limber.py, configs/close.py): this file's language model reading a
    prefix mapped from a frozen CLIP run's embedding (models/captioner.py), trained on shapes captions."""
    data = config.data.name  # shapes, or the image-text files of the config argument data=...
    config = language_model(config)
    config.objective = objective
    config.model.kind = "captioner"
    config.data.name = data
    config.data.train_size = 10_000  # captions with their CLIP embeddings, computed once when the run starts
    config.total_steps = 400
    config.eval_every_steps = 400
    config.checkpoint_every_steps = 200
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 50
    config.generation.max_new_tokens = 16  # a scene sentence is about 10 tokens
    config.eval.num_examples = 500  # held-out test images, one object each
    config.eval.batch_size = 250
    config.evals = ml_collections.ConfigDict({"captioning": evaluator("captioning", prefix="")})
    return config
