"""The end-of-run summary table."""

from __future__ import annotations

import ml_collections
import numpy as np

from input_pipeline.binding import KINDS
from input_pipeline.child_text import PHENOMENA
from input_pipeline.lm_text import QUESTION_ATTRIBUTES
from input_pipeline.shape_edits import EDITS


def format_summary(config: ml_collections.ConfigDict, summary: dict) -> str:
    e = summary["eval"]
    rows = [("objective", config.objective), ("text augmentation", config.data.text_augmentation)]
    rows.append(("steps", f"{summary['step']} (batch {config.batch_size}, {summary['wall_time_s'] / 60:.1f} min)"))
    if summary["final_loss"] is not None:
        rows.append(("final train loss", f"{summary['final_loss']:.4f}"))
    for name, chance in (("shape_colour", 64), ("shape", 8), ("colour", 8)):
        if f"zero_shot/{name}" in e:
            value = 100 * e[f"zero_shot/{name}"]
            rows.append((f"zero-shot {name.replace('_', '+')}", f"{value:5.1f}%  (chance {100 / chance:.1f}%)"))
    labels = {
        "retrieval/": "captions",
        "retrieval_same_text/": "captions, same text counts",
        "retrieval_rewrites/": "paraphrases",
    }  # the shapes evaluator's; other prefixes: config.evals entries
    prefixes = [k.removesuffix("image_to_text_R@1") for k in e if k.endswith("image_to_text_R@1")]
    for prefix in sorted(prefixes, key=lambda p: (p not in labels, list(labels).index(p) if p in labels else p)):
        for direction, arrow in (("image_to_text", "image->text"), ("text_to_image", "text->image")):
            keys = [f"{prefix}{direction}_R@{k}" for k in (1, 5, 10)]
            if all(k in e for k in keys):
                values = " / ".join(f"{100 * e[k]:.1f}" for k in keys)
                rows.append((f"{arrow} R@1/5/10 ({labels.get(prefix, prefix.rstrip('/'))})", values))
    for prefix, label in (("sts/", "STS Spearman x100"), ("sts_calibrated/", "STS Spearman x100, calibrated")):
        sets = sorted(k[len(prefix) :] for k in e if k.startswith(prefix) and k != f"{prefix}avg")
        if sets:
            values = ", ".join(f"{name} {e[prefix + name]:.1f}" for name in sets)
            rows.append((label, f"avg {e[prefix + 'avg']:.1f} ({values})"))
    for prefix, label in (("binding/", "binding (captions)"), ("binding_rewrites/", "binding (paraphrases)")):
        if f"{prefix}mean" in e:
            kinds = ", ".join(f"{kind} {100 * e[prefix + kind]:.1f}" for kind in KINDS)
            blind = 100 * e[prefix + "image_blind"]
            rows.append((label, f"{100 * e[prefix + 'mean']:5.1f}%  ({kinds}; image-blind {blind:.1f}, chance 50)"))
    if "regions/roi_caption_top1" in e:
        rows += _region_rows(e)
    if "segmentation/clip_miou" in e:
        rows += _segmentation_rows(config, e)
    if "video/motion_mean_frames" in e:
        rows += _video_rows(e)
    if "language/perplexity" in e:
        rows.append(
            ("held-out perplexity", f"{e['language/perplexity']:.3f}  (token loss {e['language/token_loss']:.4f})")
        )
    strategies = [k.split("/")[1] for k in e if k.startswith("language/") and k.endswith("/diversity")]
    for name in strategies:
        m = {k: e[f"language/{name}/{k}"] for k in ("rep-2", "rep-3", "rep-4", "diversity", "coherence")}
        rows.append((f"decoding {name}", f"rep-2/3/4 {m['rep-2']:.1f} / {m['rep-3']:.1f} / {m['rep-4']:.1f}, "
                     f"diversity {m['diversity']:.1f}, coherence {m['coherence']:.3f}"))  # fmt: skip
    if "preference/misaligned_rate" in e:  # PHF (evaluation/preference_eval.py)
        rows.append(("misaligned", f"{e['preference/misaligned_rate']:.1f}% of sampled sentences "
                     f"({e['preference/misaligned_samples']:.1f}% of samples), "
                     f"{e['preference/adversarial_rate']:.1f}% after leading prompts"))  # fmt: skip
    if "preference/aligned_loss" in e:
        losses = ", ".join(f"{k} {e[f'preference/{k}_loss']:.4f}" for k in ("aligned", "misaligned") if
                           f"preference/{k}_loss" in e)  # fmt: skip
        rows.append(("held-out loss", losses))
    if "fact_probe/accuracy" in e:  # 1.5-Pints (evaluation/fact_probe.py)
        chance = 100 * np.mean([1 / len(values) for values in QUESTION_ATTRIBUTES.values()])
        rows.append(("fact probe", f"{e['fact_probe/accuracy']:.1f}% of facts ranked first (chance {chance:.1f}%), "
                     f"log-prob of the truth {e['fact_probe/true_log_prob']:.3f}"))  # fmt: skip
        rows.append(("clean held-out loss", f"{e['fact_probe/clean_loss']:.4f}  "
                     f"(perplexity {e['fact_probe/clean_perplexity']:.3f})"))  # fmt: skip
    if "minimal_pairs/accuracy" in e:  # CLIMB (evaluation/minimal_pairs.py)
        each = ", ".join(f"{p} {e[f'minimal_pairs/{p}']:.1f}" for p in PHENOMENA if f"minimal_pairs/{p}" in e)
        rows.append(("minimal pairs", f"{e['minimal_pairs/accuracy']:.1f}% right (chance 50%): {each}"))
        rows.append(("pseudo-perplexity", f"{e['minimal_pairs/pseudo_perplexity']:.3f} on held-out documents"))
    if "prompt/accuracy" in e:  # PCP (evaluation/prompt_eval.py)
        each = ", ".join(f"{p} {e[f'prompt/{p}']:.1f}" for p in PHENOMENA if f"prompt/{p}" in e)
        rows.append(("judgements", f"{e['prompt/accuracy']:.1f}% right at the prompt's slot (chance 50%): {each}"))
    if "incremental/accuracy" in e:  # COCONUT (evaluation/incremental_eval.py)
        tasks = sorted(k for k in e if k.startswith("incremental/task_"))
        each = ", ".join(f"experience {k.rsplit('_', 1)[1]} {e[k]:.1f}" for k in tasks)
        rows.append(("seen classes", f"{e['incremental/accuracy']:.1f}% of held-out images right: {each}"))
    if "in_context/full" in e:  # MEND and its language model (evaluation/in_context_eval.py)
        ways = [("demonstrations", "full"), ("MEND vectors", "mend"), ("nothing", "zero_shot")]
        each = ", ".join(f"from {label} {e[f'in_context/{k}']:.1f}% ({e[f'in_context/{k}_tokens']:.0f} tokens)"
                         for label, k in ways if f"in_context/{k}" in e)  # fmt: skip
        rows.append(("in-context tasks", f"{each}; chance {e['in_context/chance']:.1f}%, the demos' most frequent "
                     f"output {e['in_context/frequent_output']:.1f}%"))  # fmt: skip
    if "edits/accuracy" in e:  # SuperEdit (evaluation/edit_eval.py)
        kinds = ", ".join(f"{k} {e[f'edits/accuracy_{k}']:.1f}" for k in EDITS)
        rows.append(("held-out edits", f"{e['edits/accuracy']:.1f}% right ({kinds}); changed pixels' IoU "
                     f"{e['edits/iou']:.1f}%, kept {e['edits/kept']:.1f}%"))  # fmt: skip
        rows.append(("instructions", f"{e['edits/wrong_instruction_accuracy']:.1f}% right from a wrong one; the right "
                     f"one predicts the noise better in {e['edits/preference']:.1f}%"))  # fmt: skip
    if "conflict_qa/mixed/greedy" in e:
        rows += _conflict_rows(e)
    if "captioning/colour_shape" in e:
        rows += _caption_rows(e)
    rows += [
        ("checkpoints", summary["checkpoints"]),
        ("metrics", summary["metrics"]),
        ("tensorboard", summary["tensorboard"]),
    ]
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 50)
    lines = [rule, "Summary", rule] + [f"{k:<{width}}  {v}" for k, v in rows] + [rule]
    return "\n".join(lines)


def _segmentation_rows(config: ml_collections.ConfigDict, e: dict) -> list[tuple[str, str]]:
    """The segmentation evaluator's lines: DenseCLIP's head and score map (when the model has them), the plain CLIP
    patch-token baseline, chance, and where a DenseCLIP run's towers came from."""
    rows = []
    floor = f"(chance {100 * e['segmentation/chance_miou']:.1f}"
    if "segmentation/background_miou" in e:  # a class named "background" (input_pipeline/segmentation.py)
        floor += f", all background {100 * e['segmentation/background_miou']:.1f}"
    floor += ")"
    if "segmentation/miou" in e:
        rows.append(("segmentation mIoU, head", f"{100 * e['segmentation/miou']:5.1f}  {floor}"))
        floor = ""
    maps = [f"score map {100 * e['segmentation/score_miou']:.1f}"] if "segmentation/score_miou" in e else []
    maps.append(f"plain CLIP patch tokens {100 * e['segmentation/clip_miou']:.1f}")
    rows.append(("segmentation mIoU, pixel-text", f"{', '.join(maps)}  {floor}".rstrip()))
    if config.objective == "denseclip":
        source = config.init_from.workdir or config.init_from.pretrained
        rows.append(("CLIP towers", f"from {source}" if source else "random init (the control: no init_from)"))
    return rows


VIDEO_LABELS = {
    "motion": "motion",
    "motion_order_only": "motion, order-only clips",
    "shape": "appearance: shape",
    "colour": "appearance: colour",
}


def _video_rows(e: dict) -> list[tuple[str, str]]:
    """The video evaluator's lines: X-CLIP (when the model has its video modules), the mean of frames, chance."""
    rows = []
    for label, name in VIDEO_LABELS.items():
        values = [f"X-CLIP {100 * e[f'video/{label}']:.1f}"] if f"video/{label}" in e else []
        if f"video/{label}_unprompted" in e:
            values.append(f"unprompted {100 * e[f'video/{label}_unprompted']:.1f}")
        values.append(f"mean of frames {100 * e[f'video/{label}_mean_frames']:.1f}")
        rows.append(
            (f"video zero-shot {name}", f"{', '.join(values)}  (chance {100 * e[f'video/chance_{label}']:.1f}%)")
        )
    for direction, arrow in (("video_to_text", "video->text"), ("text_to_video", "text->video")):
        values = []
        for prefix, model in (("video_retrieval/", "X-CLIP"), ("video_retrieval_mean_frames/", "mean of frames")):
            if f"{prefix}{direction}_R@1" in e:
                recalls = " / ".join(f"{100 * e[f'{prefix}{direction}_R@{k}']:.1f}" for k in (1, 5, 10))
                values.append(f"{model} {recalls}")
        rows.append((f"{arrow} R@1/5/10 (clips)", ", ".join(values)))
    return rows


def _region_rows(e: dict) -> list[tuple[str, str]]:
    """The regions evaluator's lines: the model's prompter (when it has one), the RoI baseline, chance."""
    rows = []
    for kind, chance in (("caption", "caption_top1"), ("colour_shape", "colour_shape")):
        values = [f"prompter {100 * e[f'regions/{chance}']:.1f}"] if f"regions/{chance}" in e else []
        values.append(f"RoI baseline {100 * e[f'regions/roi_{chance}']:.1f}")
        label = "region caption (of 128)" if kind == "caption" else "region colour+shape"
        rows.append((label, f"{', '.join(values)}  (chance {100 * e[f'regions/chance_{kind}']:.1f}%)"))
    values = [f"head {100 * e['grounding/iou50']:.1f}"] if "grounding/iou50" in e else []
    values.append(
        f"RoI over grid boxes {100 * e['grounding/roi_iou50']:.1f} (its best {100 * e['grounding/roi_ceiling']:.1f})"
    )
    rows.append(("grounding IoU>=0.5", f"{', '.join(values)}  (chance {100 * e['grounding/chance']:.1f}%)"))
    return rows


def _caption_rows(e: dict) -> list[tuple[str, str]]:
    """The captioning evaluator's lines: words right in captions of held-out images (and of their captions'
    text embeddings), beside chance; CLIP-S; the modality gap."""
    words = lambda p: ", ".join(f"{k} {e[f'captioning/{p}{k}']:.1f}" for k in ("colour", "shape", "colour_shape"))  # noqa: E731
    chance = f"chance {e['captioning/chance_colour']:.1f}, {e['captioning/chance_shape']:.1f}, " + (
        f"{e['captioning/chance_colour_shape']:.1f}"
    )
    return [
        ("caption accuracy (images)", f"{words('')}  ({chance})"),
        ("caption accuracy (text emb.)", words("text_")),
        (
            "caption CLIP-S",
            f"{e['captioning/clip_score']:.1f}  (true captions {e['captioning/reference_clip_score']:.1f})",
        ),
        ("modality gap", f"{e['captioning/modality_gap']:.3f}"),
    ]


def _conflict_rows(e: dict) -> list[tuple[str, str]]:
    """The knowledge_conflict evaluator's lines: context-answer accuracy of greedy, CAD and AdaCAD per split."""
    rows = []
    for split in ("conflict", "agreement", "mixed"):
        values = ", ".join(f"{name} {e[f'conflict_qa/{split}/{name}']:.1f}" for name in ("greedy", "cad", "adacad"))
        alpha = f"; AdaCAD mean alpha {e[f'conflict_qa/{split}/adacad_alpha']:.3f}" if split != "mixed" else ""
        rows.append((f"QA context answer ({split})", f"{values}{alpha}"))
    rows.append(("QA closed book (memorised)", f"{e['conflict_qa/closed_book']:.1f}"))
    return rows
