"""Every text method trains 30 steps end to end on files written here (not the embedded sentences): unsupervised
SimCSE on a text file, supervised SimCSE on a TSV of triples, MultiCSR on JSON Lines triples from the unsupervised
run, CCP on two-language JSON Lines documents. Each is scored by the STS evaluator on a held-out JSON Lines file
of graded pairs, and its Spearman is checked against SciPy's from the checkpoint's embeddings.
"""

from __future__ import annotations

import itertools
import json
import math

import jax
import numpy as np
import pytest
from scipy import stats

from configs import ccp, multicsr, simcse
from evaluation.run import restore_params
from input_pipeline.tokenizer import load_tokenizer
from models.two_tower import build_model
from training.loop import train_and_evaluate
from training.validation import validate_config

STEPS = 30
# A vocabulary the embedded data never uses; each attribute has a synonym for paraphrases.
ATTRIBUTES = (
    {"tiny": "little", "huge": "giant"},
    {"cat": "kitten", "dog": "puppy", "horse": "pony", "goat": "kid"},
    {"sleeps": "rests", "runs": "sprints", "eats": "feeds", "sits": "waits"},
    {"river": "stream", "barn": "shed", "tree": "oak", "road": "path"},
)
SCENES = list(itertools.product(*(sorted(words) for words in ATTRIBUTES)))  # 128 scenes


def sentence(scene, synonyms: bool = False) -> str:
    words = [ATTRIBUTES[i][w] if synonyms else w for i, w in enumerate(scene)]
    return f"the {words[0]} {words[1]} {words[2]} near the {words[3]}"


def changed(scene, index: int):
    """`scene` with attribute `index` replaced by the next word of its kind."""
    options = sorted(ATTRIBUTES[index])
    return tuple(options[(options.index(w) + 1) % len(options)] if i == index else w for i, w in enumerate(scene))


def second_language(text: str) -> str:
    """A 'language' with disjoint words (each word reversed and suffixed), as CCP's banks expect."""
    return " ".join(word[::-1] + "o" for word in text.split())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_files")
    train, held_out = SCENES[::2], SCENES[1::2]  # the STS pairs' scenes never occur in training
    (folder / "sentences.txt").write_text("\n".join(sentence(s, k % 2 == 1) for k, s in enumerate(train)) + "\n\n")
    rows = ["sent0\tsent1\thard_neg"] + [
        f"{sentence(s)}\t{sentence(s, True)}\t{sentence(changed(s, k % 4))}" for k, s in enumerate(train)
    ]
    (folder / "nli.tsv").write_text("\n".join([*rows, "an anchor\t\ta negative"]) + "\n")  # the empty field is skipped
    triples = [
        {"premise": sentence(s), "entailment": sentence(s, True), "contradiction": sentence(changed(s, k % 4))}
        for k, s in enumerate(train)
    ]
    (folder / "nli.jsonl").write_text("\n".join(json.dumps(t) for t in triples) + "\nnot json\n")
    documents = []
    for k, s in enumerate(train):
        lines = [sentence(s), sentence(s, True), sentence(changed(s, 3)), sentence(changed(s, 0), True)]
        english = k % 2 == 0
        documents.append(
            {
                "sentences": lines if english else [second_language(x) for x in lines],
                "language": "en" if english else "xx",
            }
        )
    (folder / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in documents) + "\n")
    pairs = []
    for k, s in enumerate(held_out):
        other = changed(changed(s, k % 4), (k + 1) % 4) if k % 3 else changed(s, k % 4)
        shared = sum(a == b for a, b in zip(s, other, strict=True))
        pairs.append({"sentence1": sentence(s), "sentence2": sentence(other, k % 2 == 0), "score": 5 * shared / 4})
        pairs.append({"sentence1": sentence(s), "sentence2": sentence(s, True), "score": 5.0})
    (folder / "sts_heldout.jsonl").write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    return folder


def tiny(config, data: str, path, files):
    config.data.update(name=data, path=str(path), train_size=10_000)
    config.update(total_steps=STEPS, batch_size=16, log_every_steps=STEPS, eval_every_steps=STEPS)
    config.checkpoint_every_steps = STEPS
    config.eval.update(sts_files=(str(files / "sts_heldout.jsonl"),), batch_size=24)
    config.model.text.update(width=32, depth=1, heads=2)
    config.model.embed_dim = 32
    config.text.vocab_size = 300
    config.optimizer.update(warmup_steps=3, learning_rate=3e-3)
    return config


def train(config, workdir) -> dict:
    validate_config(config)
    summary = train_and_evaluate(config, str(workdir))
    assert summary["step"] == STEPS and math.isfinite(summary["final_loss"])
    return summary


def check_held_out_sts(config, workdir, summary) -> None:
    """The evaluator's Spearman equals SciPy's on the cosines of the checkpoint's text embeddings."""
    tokenizer = load_tokenizer(config.text.tokenizer_path or str(workdir / "tokenizer.model"), config.text.tokenizer)
    model = build_model(config, tokenizer.vocab_size)
    params, step = restore_params(config, str(workdir), model)
    assert step == STEPS
    with open(config.eval.sts_files[0], encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f]
    encode = jax.jit(lambda t: model.apply({"params": params}, t, method=model.encode_text)["text_embedding"])
    a, b = (
        np.asarray(encode(tokenizer.encode([p[key] for p in pairs], config.model.text.max_len)), np.float64)
        for key in ("sentence1", "sentence2")
    )
    cosine = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = 100 * stats.spearmanr(cosine, [p["score"] for p in pairs]).statistic
    assert summary["eval"]["sts/sts_heldout"] == pytest.approx(expected, abs=1e-3)
    assert summary["eval"]["sts/avg"] == summary["eval"]["sts/sts_heldout"]  # the file's set alone
    assert "sts/shapes_sts" not in summary["eval"]


@pytest.fixture
def unsup_run(files, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("simcse_unsup")
    config = tiny(simcse.get_config("mode=unsup"), "sentences", files / "sentences.txt", files)
    summary = train(config, workdir)
    check_held_out_sts(config, workdir, summary)
    return workdir


def test_supervised_simcse_on_a_tsv_of_triples(files, tmp_path, caplog):
    config = tiny(simcse.get_config("mode=sup"), "nli", files / "nli.tsv", files)
    with caplog.at_level("WARNING"):
        summary = train(config, tmp_path)
    assert any(
        r.getMessage().startswith("Skipped 1 unusable rows") and "(empty field)" in r.getMessage()
        for r in caplog.records
    )
    check_held_out_sts(config, tmp_path, summary)


def test_unsupervised_simcse_on_a_text_file_then_multicsr_on_json_lines_from_it(files, unsup_run, tmp_path):
    config = multicsr.get_config()
    config.init_from.workdir = str(unsup_run)
    config.text.tokenizer_path = str(unsup_run / "tokenizer.model")  # the frozen encoder's vocabulary
    config = tiny(config, "nli", files / "nli.jsonl", files)
    check_held_out_sts(config, tmp_path, train(config, tmp_path))


def test_ccp_on_two_language_documents(files, tmp_path):
    config = tiny(ccp.get_config(), "documents", files / "docs.jsonl", files)
    config.ccp.queue_size = 32
    summary = train(config, tmp_path)
    check_held_out_sts(config, tmp_path, summary)
    assert "sts_calibrated/sts_heldout" in summary["eval"]
