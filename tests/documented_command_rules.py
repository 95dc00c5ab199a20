"""What the documented-commands test does with each command of the docs: RULES, the first matching form decides.

Actions: RUN (at the tiny size of TINY_RUN and TINY_MODEL), VALIDATE (flags and config only), CHECK (the files
and configs the command needs), SKIP (with the reason). tests/test_documented_commands.py carries them out.
"""

from __future__ import annotations

import dataclasses
import re

from documented_commands import Command

RUN, VALIDATE, CHECK, SKIP = "run", "validate", "check", "skip"

# Appended to every trained main.py run: 2 steps of batch 16, an eval and a checkpoint at step 2.
TINY_RUN = (
    "--config.total_steps=2",
    "--config.eval_every_steps=2",
    "--config.checkpoint_every_steps=2",
    "--config.log_every_steps=1",
    "--config.batch_size=16",
    "--config.data.train_size=256",
    "--config.data.cache_dir=",
    "--config.eval.num_examples=64",
)
# One block per tower.
TINY_MODEL = ("--config.model.image.depth=1", "--config.model.text.depth=1")


@dataclasses.dataclass(frozen=True)
class Rule:
    form: str  # a regex the command (its argv joined by spaces) starts with
    action: str  # RUN, VALIDATE (flags and config only), CHECK (files the command needs), SKIP
    reason: str
    finished: str = ""  # RUN: a regex the output shows when the command finished


_BIG = r"--config=\S+:\S*size=(small|B/32|B/16|L/14)"
_YOUR_DATA = r"--config=\S+:\S*data=(csv|webdataset|jsonl|tfds|array_record)"
_MINILM = r"(\S*configs/lit\.py|\S+text=minilm)"
_MINILM_REASON = (
    "trains the pretrained 22M-parameter MiniLM tower, over 4 min for 2 steps on 2 shared cores "
    "(tests/test_lit.py checks the tower, its locking and SimCSE from it)"
)
# The first rule whose form matches a command decides what the test does with it.
RULES = (
    Rule(
        r"pip ",
        SKIP,
        "installs packages; a test must not change the environment (.ci/run runs the README's "
        "install command, test_readme.py checks it is the README's)",
    ),
    Rule(r"pytest", SKIP, "the test suite that runs this test"),
    Rule(r"gcloud ", SKIP, "needs a Google Cloud project and a Cloud TPU"),
    Rule(
        r"python main\.py --config=\S+:\S*(pretrained|image)=/path/to/",
        SKIP,
        "needs a downloaded checkpoint (tests/test_interop_siglip.py, test_interop_clip.py and test_llama_decoder.py "
        "start from small random ones through these configs, as main.py does)",
    ),
    Rule(r"xmanager launch ", CHECK, "needs xmanager and a Vertex AI project: checks the launch file exists"),
    Rule(r"sbatch ", CHECK, "needs a SLURM cluster with GPUs: checks the script exists and `bash -n` parses it"),
    Rule(
        r"python main\.py .*--dry_run",
        VALIDATE,
        "compiles a ViT-B/16 step for 256 fake devices (4-12 min, "
        "11 GiB on 2 cores; tests/test_dry_run.py compiles a one-block B/16): flags and config checked only",
    ),
    Rule(
        rf"python main\.py {_BIG}",
        VALIDATE,
        "a ViT-B/16-sized model is too big for a 2-core CPU: flags and config checked only",
    ),
    Rule(
        rf"python main\.py {_YOUR_DATA}",
        VALIDATE,
        "reads your files under /data (tests/test_real_data_main.py "
        "trains on generated files of each format): flags and config checked only",
    ),
    Rule(
        rf"python main\.py --config={_MINILM}",
        VALIDATE,
        f"{_MINILM_REASON}: flags and config checked only",
    ),
    Rule(
        r"python main\.py --config=configs/clip\.py --workdir=runs/embedder ",
        CHECK,
        "a CLIP run as ProCLIP's frozen embedder, for the post-pretraining chain below that is checked, not run "
        "(configs/clip.py is trained by this doc's first command): main.py's flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/(simcse|multicsr|ccp)\.py",
        CHECK,
        "the text-only methods, each trained and evaluated at a tiny size by tests/test_text_training.py through the "
        "same loop: main.py's flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/space2\.py .*--config\.data\.name=dialogs",
        CHECK,
        "trains on your dialog files (tests/test_dialog_files.py trains SPACE-2 on generated ones and probes "
        "generated held-out lines through the same loop): main.py's flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/phf\.py .*--config\.data\.name=scored_documents",
        CHECK,
        "trains on your scored documents (tests/test_phf.py trains PHF on generated ones and evaluates generated "
        "held-out lines through the same loop): main.py's flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/clip\.py --workdir=runs/x ",
        CHECK,
        "shows how overrides are written (configs/clip.py is trained by docs/results.md's commands): its flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/(limber|close)\.py",
        CHECK,
        "captions through a trained CLIP run and language model that the doc names, not trains "
        "(tests/test_captioning.py trains both captioners from tiny ones through main.py's loop): its flags parse",
    ),
    Rule(
        r"python main\.py .*--mode=eval",
        RUN,
        "evaluates the run an earlier command trained ([--eval_data] left out: it names your files)",
        r"Results in ",
    ),
    Rule(
        r"python main\.py .*--mode=generate",
        RUN,
        "continues the prompt with the language model an earlier command trained",
        r"(^|\n)(<\|aligned\|> )?(we see a|there is a)",
    ),
    Rule(
        r"python main\.py .*--mode=export",
        RUN,
        "writes the run an earlier command trained as a Hugging Face folder (tests/test_llama_decoder.py loads one "
        "with transformers)",
        r"written to .*\(LlamaForCausalLM\)",
    ),
    Rule(
        r"python main\.py --config=configs/pcp\.py",
        CHECK,
        "PCP's chain of runs, each started from the one before (tests/test_pcp.py trains the chain end to end at a "
        "tiny size through the same loop): main.py's flags parse",
    ),
    Rule(
        r"python benchmarks/pcp_chain\.py ",
        CHECK,
        "PCP's comparison at 3 seeds, 24 runs (tests/test_pcp.py trains the chain and checks the script's order and "
        "agreement count): its flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/coconut\.py",
        CHECK,
        "COCONUT's experiences, each started from the one before; a rehearsal buffer needs more examples per class "
        "than the tiny run renders (tests/test_coconut.py trains two experiences end to end through the same loop): "
        "main.py's flags parse",
    ),
    Rule(
        r"python benchmarks/coconut_chain\.py ",
        CHECK,
        "COCONUT's ablation at 3 seeds, 33 runs (tests/test_coconut.py checks its forgetting arithmetic and trains "
        "two experiences): its flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/climb\.py:curriculum=(vocabulary|objective) ",
        VALIDATE,
        "the curricula that change the loss, trained end to end by tests/test_climb.py (the baseline and the data "
        "curriculum commands run here): flags and config checked only",
    ),
    Rule(
        r"python main\.py --config=configs/superedit\.py(:arm=ip2p | .*wrong_instruction_rate)",
        VALIDATE,
        "SuperEdit's arms (no triplet; wrong training instructions) change one option of the run the command above "
        "trains here, and tests/test_superedit.py checks both in the loss and the data: flags and config checked only",
    ),
    Rule(r"python main\.py ", RUN, "trains at a tiny size", r"\nSummary\n"),
    Rule(
        r"python -m input_pipeline\.convert ",
        VALIDATE,
        "converts your files under /data (tests/test_real_data.py converts generated ones): flags checked only",
    ),
    Rule(
        rf"python benchmarks/compare_methods\.py --configs={_MINILM}",
        SKIP,
        f"{_MINILM_REASON}; each config's own main.py command is checked",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py .*--init_from=",
        CHECK,
        "a post-pretraining chain (a CLIP run per seed, then each method from it; tests/test_post_pretraining.py "
        "trains these configs from a tiny CLIP run): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/(second_language|proclip)_retrieval\.py ",
        CHECK,
        "scores a post-pretraining chain's runs (checked above): the script's flags parse",
    ),
    Rule(
        r"python benchmarks/(binding|region)_scores\.py ",
        CHECK,
        "scores runs trained beforehand (every training test runs the same evaluator): the script's flags parse",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/lm\.py,configs/simctg\.py ",
        CHECK,
        "the language models at 5 seeds (the doc runs configs/lm.py's commands; tests/test_language_model.py steps "
        "both objectives): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/xclip\.py ",
        CHECK,
        "X-CLIP is trained and evaluated at a tiny size by tests/test_xclip.py, and compare_methods' tables by "
        "docs/results.md's first command: the config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/(limber|close)\.py",
        CHECK,
        "captioners from the 5 CLIP runs of docs/results.md and the 5 language models above (tests/test_captioning.py "
        "trains both from tiny ones): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py .*--workdir=runs/clip_untrained ",
        CHECK,
        "one step of configs/clip.py per seed, the untrained-encoder control (configs/clip.py is trained by "
        "docs/results.md's first command): the config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py .*--workdir=runs/cloc_off ",
        CHECK,
        "the CLOC comparison above with its region losses weighted 0 (tests/test_cloc.py checks the weights): "
        "the config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/(clip\.py,configs/(dreamlip|alip)|cloc|alip)\.py",
        CHECK,
        "seed methods that their own tests train and evaluate (tests/test_methods1_training.py, test_cloc.py), and "
        "compare_methods' table is run by this doc's first command: every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/clip\.py,configs/laclip\.py,configs/protoclip\.py ",
        CHECK,
        "budget points of configs that this doc's first command (LaCLIP) and tests/test_methods1_training.py "
        "(ProtoCLIP) train: every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/clip\.py,configs/laclip\.py --seeds=0,1,2 ",
        CHECK,
        "the 3-seed table that the 5-seed one above it superseded, same configs (that command trains them): "
        "every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/salt\.py:kd=none,",
        CHECK,
        "SALT and its baselines at 5 seeds from the small models of the command above (the doc's main.py commands "
        "train a small model and SALT from it at the tiny size; tests/test_salt.py trains both): every config loads "
        "and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/mend\.py",
        CHECK,
        "MEND's three losses at 3 seeds from one language model (the doc's main.py commands train the language "
        "model and MEND at the tiny size; tests/test_mend.py trains both stages): every config loads and passes "
        "validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/superedit\.py",
        CHECK,
        "SuperEdit and InstructPix2Pix at 3 seeds (the doc trains both at the tiny size; tests/test_superedit.py "
        "trains SuperEdit end to end): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/phf\.py",
        CHECK,
        "PHF's four objectives at 5 seeds (the doc trains configs/phf.py at the tiny size; tests/test_phf.py trains "
        "every objective end to end): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/pints\.py",
        CHECK,
        "1.5-Pints' two corpora and two decoders at 5 seeds (the doc trains both corpora at the tiny size; "
        "tests/test_pints.py trains both end to end): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/climb\.py",
        CHECK,
        "CLIMB's baseline and three curricula at 3 seeds (the doc trains each at the tiny size; tests/test_climb.py "
        "trains every curriculum end to end): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py ",
        RUN,
        "trains each config at a tiny size, seed 0 only",
        r"\| config \| seeds \|",
    ),
    Rule(
        r"python benchmarks/shape_probe\.py ",
        RUN,
        "probes the run an earlier command trained, on 64 test images",
        r"image shape by nearest class mean",
    ),
    Rule(
        r"python benchmarks/paired_curves\.py ",
        CHECK,
        "pairs the eval curves of the 5-seed runs above (tests/test_paired_results.py runs it on written curves): "
        "its flags parse",
    ),
    Rule(r"python -m launch\.local ", RUN, "trains the [--only] runs of the sweep at a tiny size", r"\| "),
    Rule(r"python -m launch\.sweep ", RUN, "lists or summarises the sweep", r"\S"),
)


def rule_of(command: Command) -> Rule | None:
    text = " ".join(command.argv)
    return next((rule for rule in RULES if re.match(rule.form, text)), None)


def action_of(command: Command) -> str | None:
    rule = rule_of(command)
    return rule.action if rule else None
