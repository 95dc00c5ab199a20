"""A method's own checks, before jax starts: its section config.<objective> against its config file's (no unknown
or missing key, each of its default's type), the objective's `validate`, what its loss module cannot check (the
input pipeline's class names; another run's files), and the record fields it reads against the data."""

from __future__ import annotations

import os

import ml_collections

from configs import (
    alip,
    ccp,
    climb,
    clip_hard_negatives,
    clip_refine,
    cloc,
    close,
    coconut,
    degla,
    denseclip,
    dreamlip,
    limber,
    mend,
    multicsr,
    pcp,
    phf,
    proclip,
    protoclip,
    salt,
    simcse,
    simctg,
    space2,
    superedit,
    uclip,
    xclip,
)
from configs.common import REAL_DATASETS, VIDEO_DATASETS, check_type, flat_items
from configs.errors import ConfigError
from input_pipeline import class_incremental, dialog_frames, shape_video
from input_pipeline.acceptability_text import ACCEPTABILITY_DATASET
from input_pipeline.child_text import CHILD_DATASET, POS_TAGS
from input_pipeline.cleaning import METHOD_TEXT_FIELDS
from input_pipeline.icl_tasks import ICL_DATASET
from input_pipeline.preference_text import PHF_DATASETS
from input_pipeline.segmentation import check_class_names
from input_pipeline.shape_edits import EDIT_DATASET
from input_pipeline.shapes import TEXT_FIELDS
from losses.objectives import OBJECTIVES
from models.two_tower import pos_task
from training.pseudo_labels import check_labeller
from training.trained_runs import check_language_model_run, run_config

# objective -> the config file whose config.<objective> section holds the method's options, with their defaults.
METHOD_CONFIGS = {
    module.__name__.rsplit(".", 1)[1]: module
    for module in (alip, ccp, climb, clip_hard_negatives, clip_refine, close, cloc, coconut, degla, denseclip, dreamlip,
                   limber, mend, multicsr, pcp, phf, proclip, protoclip, salt, simcse, simctg, space2, superedit, uclip,
                   xclip)
}  # fmt: skip
# data.name -> the fields its records hold (besides the image); text-only data is the text objectives' own check.
RECORD_FIELDS = {
    "shapes": (*TEXT_FIELDS, "boxes", "object_mask"),
    **dict.fromkeys(VIDEO_DATASETS, shape_video.TEXT_FIELDS),
    **dict.fromkeys(REAL_DATASETS, ("caption", "rewrites")),
    EDIT_DATASET: ("caption", "target", "hard_negatives"),
    # each sample's json (input_pipeline/webdataset.py)
    "webdataset": ("caption", "rewrites", *METHOD_TEXT_FIELDS, "boxes", "region_captions"),
}


def check_salt_teacher(c: ml_collections.ConfigDict) -> None:
    """SALT's small model is a finished language-model run of config.salt.teacher's sizes that can read the
    distilled model's whole context (its record and files only)."""
    check_language_model_run(
        c.salt.teacher_workdir, c.salt.teacher, key="config.salt.teacher_workdir", sizes_key="config.salt.teacher",
        what="the small model", trained_by="configs/salt.py:stage=teacher",
    )  # fmt: skip
    if c.salt.teacher.max_len < c.model.decoder.max_len:
        raise ConfigError(
            f"config.salt.teacher.max_len ({c.salt.teacher.max_len}) is shorter than the context it must read, "
            f"config.model.decoder.max_len ({c.model.decoder.max_len}); train the small model with a context as long."
        )
    if not os.path.isdir(os.path.join(c.salt.teacher_workdir, "checkpoints")):
        raise ConfigError(f"{c.salt.teacher_workdir!r} holds no checkpoints; finish training the small model first.")


def check_space2_data(c: ml_collections.ConfigDict) -> None:
    """SPACE-2 trains on commands with frames, and its views are distinct names of their views
    (input_pipeline/dialog_frames.py), at least one."""
    if c.data.name not in ("shape_commands", "dialogs"):
        raise ConfigError(
            f"SPACE-2 needs labelled utterances with frames beside unlabelled ones, which config.data.name="
            f"{c.data.name!r} does not hold; set it to 'shape_commands' (embedded) or 'dialogs' (your JSON Lines)."
        )
    views = tuple(c.space2.views)
    if not views or len(set(views)) != len(views) or not set(views) <= set(dialog_frames.VIEWS):
        raise ConfigError(
            f"config.space2.views={views!r} must name distinct views, at least one, of {list(dialog_frames.VIEWS)}."
        )


def check_phf_data(c: ml_collections.ConfigDict) -> None:
    """PHF trains on sentences scored one by one: the embedded corpus or your scored JSON Lines."""
    if c.data.name not in PHF_DATASETS:
        raise ConfigError(
            f"PHF reads sentences scored one by one, which config.data.name={c.data.name!r} lacks; set it to "
            "'preference_text' (embedded) or 'scored_documents' (your JSON Lines, docs/language.md)."
        )


def check_climb_data(c: ml_collections.ConfigDict) -> None:
    """CLIMB's data curriculum and word-class task read what only the child-directed corpus holds: each document's
    register and each word's part of speech (input_pipeline/child_text.py)."""
    classes = tuple(c.climb.pos_classes)
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(POS_TAGS):
        raise ConfigError(
            f"config.climb.pos_classes={classes!r} must name distinct tags, at least one, of {list(POS_TAGS)}; "
            "CLIMB's are ('NOUN', 'VERB') or all of them."
        )
    needs = "a data curriculum" if c.climb.data != "none" else "a word-class task" if pos_task(c.climb) else ""
    if needs and c.data.name != CHILD_DATASET:
        raise ConfigError(
            f"CLIMB's {needs} reads the registers and parts of speech of config.data.name='{CHILD_DATASET}', not "
            f"{c.data.name!r}; set config.data.name='{CHILD_DATASET}', or turn it off (config.climb.data='none', "
            "pos_window=(0, 0))."
        )


def check_previous_experience(c: ml_collections.ConfigDict) -> None:
    """The classifier has a logit per class of the label; after the first experience, config.init_from.workdir is a
    finished COCONUT run of the experience before, on the same split of the same label; every parameter is copied
    from it (it is also the teacher)."""
    k = c.coconut
    classes = len(class_incremental.LABELS[k.label])
    if c.model.image_classes != classes:
        raise ConfigError(
            f"config.model.image_classes={c.model.image_classes} is not the {classes} classes of the label; "
            f"set it to {classes} (configs/coconut.py does)."
        )
    if k.task == 0:
        return
    key, workdir = "config.init_from.workdir", c.init_from.workdir
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise ConfigError(f"{key} {workdir!r} holds no checkpoints; train experience {k.task - 1} there first.")
    previous = run_config(workdir)
    if previous.objective != "coconut" or (previous.coconut.task, previous.coconut.tasks, previous.coconut.label) != (
        k.task - 1,
        k.tasks,
        k.label,
    ):
        raise ConfigError(
            f"{key} {workdir!r} is no configs/coconut.py run of experience {k.task - 1} of {k.tasks} on the "
            f"{k.label} classes; name the run of the experience before this one."
        )


def check_pcp_data(c: ml_collections.ConfigDict) -> None:
    """PCP's stages after pretraining read the judgements' template and label words
    (input_pipeline/acceptability_text.py), and stage `pcp`
    a prompt-based fine-tuned labeller (training/pseudo_labels.py)."""
    if c.pcp.stage != "pretrain" and c.data.name != ACCEPTABILITY_DATASET:
        raise ConfigError(
            f"PCP's stage {c.pcp.stage!r} reads the judgements' template and labels, which config.data.name="
            f"{c.data.name!r} lacks; set it to '{ACCEPTABILITY_DATASET}'."
        )
    if c.pcp.stage == "pcp":
        check_labeller(c)


def check_mend(c: ml_collections.ConfigDict) -> None:
    """MEND distils the embedded in-context tasks for a finished language-model run of config.model.decoder's sizes,
    and its distiller's context holds their demonstrations and the k summary ids."""
    if c.data.name != ICL_DATASET:
        raise ConfigError(
            f"MEND distils the demonstrations of in-context tasks, which config.data.name={c.data.name!r} lacks; set "
            f"it to '{ICL_DATASET}'."
        )
    check_language_model_run(
        c.mend.lm_workdir, c.model.decoder, key="config.mend.lm_workdir", sizes_key="config.model.decoder",
        what="the language model", trained_by="configs/mend.py:stage=icl",
    )  # fmt: skip
    if run_config(c.mend.lm_workdir).data.name != ICL_DATASET:
        raise ConfigError(
            f"config.mend.lm_workdir {c.mend.lm_workdir!r} did not train on the in-context tasks, so it cannot read "
            "their demonstrations; name a configs/mend.py:stage=icl run."
        )
    if not os.path.isdir(os.path.join(c.mend.lm_workdir, "checkpoints")):
        raise ConfigError(f"{c.mend.lm_workdir!r} holds no checkpoints; finish training the language model first.")
    d = c.mend.distiller
    kv_heads = c.model.decoder.kv_heads
    if d.width % d.heads or d.max_len <= c.mend.virtual_tokens or (kv_heads and d.heads % kv_heads):
        raise ConfigError(
            f"config.mend.distiller (width {d.width}, heads {d.heads}, max_len {d.max_len}) needs heads dividing the "
            f"width (and divided by the language model's {kv_heads or d.heads} key-value heads) and a context longer "
            f"than the {c.mend.virtual_tokens} summary ids; fix it."
        )
    if c.model.decoder.max_len <= c.mend.virtual_tokens:
        raise ConfigError(
            f"config.mend.virtual_tokens ({c.mend.virtual_tokens}) fill the language model's context of "
            f"{c.model.decoder.max_len}; lower it."
        )


# objective -> what its loss module's validate cannot check: the input pipeline's class names, data and views,
# another run's files.
OBJECTIVE_CHECKS = {
    "denseclip": check_class_names, "salt": check_salt_teacher, "space2": check_space2_data, "phf": check_phf_data,
    "climb": check_climb_data, "pcp": check_pcp_data, "coconut": check_previous_experience, "mend": check_mend,
}  # fmt: skip


def check_method_options(c: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for the first problem of config.<objective>, or of what the objective reads."""
    name = c.objective
    if name in METHOD_CONFIGS:
        source = f"configs/{name}.py"
        defaults = flat_items(METHOD_CONFIGS[name].get_config()[name])
        section = c.get(name)
        if not isinstance(section, ml_collections.ConfigDict):
            raise ConfigError(f"config.objective={name!r} reads its options from config.{name}; start from {source}.")
        options = flat_items(section)
        for key, value in options.items():
            if key not in defaults:
                raise ConfigError(
                    f"config.{name}.{key} is not an option of {name}; fix its spelling, or use one of "
                    f"{sorted(defaults)} ({source})."
                )
            check_type(f"{name}.{key}", value, defaults[key])
        missing = sorted(set(defaults) - set(options))
        if missing:
            raise ConfigError(f"config.{name} lacks the options {missing}; add them with the defaults of {source}.")
    objective = OBJECTIVES[name]
    if objective.validate is not None:
        objective.validate(c)
    if name in OBJECTIVE_CHECKS:
        OBJECTIVE_CHECKS[name](c)
    supplied = RECORD_FIELDS.get(c.data.name)
    absent = [field for field in objective.record_fields if supplied is not None and field not in supplied]
    if absent:
        raise ConfigError(
            f"The {name} objective reads each record's {absent[0]!r}, which config.data.name={c.data.name!r} does "
            f"not supply; train it on data.name='shapes', or on webdataset shards whose json holds {absent[0]!r}, or "
            "choose another objective."
        )
