"""1.5-Pints — "Pretraining in Days, Not Months: Your Language Model Thrives on Quality Data" (Tan & Wang 2024;
METHODS.md §27) in miniature: a Llama-style decoder (the paper's architecture: RMSNorm, rotary positions, SwiGLU,
grouped-query attention, no biases, untied output; configs/lm.py's llama_style()) pretrained on textbook-like or
on web-like text that teach the same facts in the same number of words.

    python main.py --config=configs/pints.py --workdir=runs/pints_expository
    python main.py --config=configs/pints.py:corpus=web --workdir=runs/pints_web

The corpora are embedded (input_pipeline/quality_text.py): document i of each states the same 2-3 facts about the
made-up objects of input_pipeline/lm_text.py; the expository one restates them and adds a clean shapes sentence,
the web one contradicts 40% of them and adds boilerplate and word salad, to the same length in words. Both arms
train one tokenizer on both corpora, so their losses compare token for token. Evaluated every 100 steps by the
`fact_probe` evaluator (evaluation/fact_probe.py): how often the world's value of each of the 96 memorised facts
is the most likely after "the vokim is" / "the vokim is a", its mean log-probability there, and the loss on
held-out expository documents, the same text for both arms. The paper's claim: the expository arm wins per token.
Not built: the paper's corpus (Expository-Prose-V1, 57B tokens), its size (1.56B, a 2k or 16k context) and its
fine-tuning (SFT, DPO).
Config arguments: `corpus` (`expository`, the default, or `web`); `arch` (`llama`, the default, or `gpt`:
configs/lm.py's GPT-2-style decoder of the same width, depth and heads).
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator
from configs.lm import language_model, llama_style
from input_pipeline.quality_text import QUALITY_DATASETS

CORPORA = {name.removesuffix("_text"): name for name in QUALITY_DATASETS}  # the argument corpus= -> config.data.name


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, corpus="expository", arch="llama")
    if arg.corpus not in CORPORA:
        raise ValueError(f"Unknown 1.5-Pints corpus {arg.corpus!r}; use corpus= one of {list(CORPORA)}.")
    if arg.arch not in ("llama", "gpt"):
        raise ValueError(f"Unknown architecture {arg.arch!r}; use arch=llama or arch=gpt.")
    config = language_model(common.get_base_config(None))
    if arg.arch == "llama":
        llama_style(config.model.decoder)  # 4 heads sharing 2 key-value heads
    config.data.name = CORPORA[arg.corpus]
    config.model.decoder.max_len = 96  # the longest document, 97 tokens with BOS and EOS: none is cut
    config.total_steps = 1000  # 1.7 min on 2 idle cores: 32,000 documents, each read once (train_size)
    config.eval_every_steps = 50  # the measures against documents read (~0.5 s each): facts are all known by the end
    config.data.train_size = 32_000
    config.eval.num_examples = 500  # held-out expository documents of the clean loss
    config.evals = ml_collections.ConfigDict({"fact_probe": evaluator("fact_probe", prefix="")})
    return config
