"""The recipe schema: which sections a recipe has, which keys each accepts, and the checked :class:`Recipe`.

A recipe is data, not code. Each stage section holds the fields of the library config that the
stage builds (``distill:`` takes :class:`~kdtool.distill.DistillConfig` fields, ``export:`` takes
:class:`~kdtool.export.config.ExportConfig` fields, ...), minus the ones the runner fills in itself
(input and output paths, the language, the window sizes of ``features:``), plus a few recipe keys
listed in :data:`SECTIONS`. So the known keys of a section are read from its config dataclass and
can never drift from what the library accepts; an unknown key is refused with one line naming it
and the known ones (:mod:`kdtool.recipes.checking`).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import re
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class PATH:
    """Marker type of a recipe-only key that holds a file path."""


class MODEL:
    """Marker type of a key that holds a model reference (directory, ``package:``, hub id, preset)."""


# fields of TrainConfig/DistillConfig the runner fills from the run directory or other sections
TRAIN_FILLED = {"train_file", "dev_file", "output", "work_dir", "resume", "overwrite", "stop_after", "lang",
                "max_length", "doc_stride", "max_query_length"}


@dataclass(frozen=True)
class Section:
    """The keys one recipe section accepts.

    ``config`` names the dataclass whose fields are accepted (``module:Class``), minus ``filled``;
    ``extra`` adds recipe-only keys with their types; ``rename`` maps recipe keys to config fields.
    """

    about: str
    config: str | None = None
    filled: frozenset = frozenset()
    extra: dict = field(default_factory=dict)
    rename: dict = field(default_factory=dict)  # recipe key -> config field

    def config_class(self):
        if self.config is None:
            return None
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module), name)

    def key_types(self) -> dict[str, Any]:
        """Every key this section accepts and its type (a typing annotation or PATH/MODEL)."""
        types_: dict[str, Any] = {}
        cls = self.config_class()
        if cls is not None:
            hints = typing.get_type_hints(cls)
            back = {v: k for k, v in self.rename.items()}
            for f in dataclasses.fields(cls):
                if f.name not in self.filled:
                    types_[back.get(f.name, f.name)] = hints[f.name]
        types_.update(self.extra)
        return types_


SECTIONS: dict[str, Section] = {
    "data": Section("SQuAD files; without dev, the train pool is split by article",
                    extra={"train": PATH, "dev": PATH | None, "dev_fraction": float, "split_seed": int, "lang": str}),
    "features": Section("windows for training, evaluation and export",
                        config="kdtool.data.features:FeatureConfig"),
    "finetune": Section("fine-tune MODEL on the train split into the teacher (optional stage)",
                        config="kdtool.distill.config:TrainConfig", filled=frozenset(TRAIN_FILLED)),
    "distill": Section("TinyBERT distillation of the teacher into the student",
                       config="kdtool.distill.config:DistillConfig", filled=frozenset(TRAIN_FILLED),
                       rename={"teacher": "model"}),
    "prune": Section("structured pruning of the student to a budget, recovered from the teacher (optional stage)",
                     config="kdtool.prune.config:PruneConfig",
                     filled=frozenset({"model", "output", "train_file", "dev_file", "resume", "overwrite", "stop_after"})),
    "export": Section("one bundle per precision of `precisions`",
                      config="kdtool.export.config:ExportConfig",
                      filled=frozenset({"model_dir", "output", "precision", "overwrite", "calibration_data"}),
                      extra={"precisions": list[str], "calibration": str | None}),
    "validate": Section("F1/EM of teacher, student and bundles on the dev split",
                        config="kdtool.validate:ValidateConfig",
                        filled=frozenset({"models", "data", "lang", "features"}),
                        extra={"reference": str}),
    "profile": Section("latency of teacher, student and bundles; speed-ups against the teacher",
                       config="kdtool.profiles.config:ProfileConfig", filled=frozenset({"models", "data"}),
                       extra={"data": str | None}),
}
TOP_LEVEL = {"name": str, "description": str, **{k: dict for k in SECTIONS}}
REQUIRED = ("name", "data", "distill")
MODEL_KEYS = {("finetune", "model"), ("distill", "teacher"), ("distill", "student"), ("prune", "teacher")}

STAGE_ORDER = ("data", "finetune", "distill", "prune", "export", "validate", "profile", "report")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    source: str  # the file it was read from, or "<embedded>"
    sections: dict  # checked sections (data, features, finetune, ...), paths absolute
    overrides: tuple[str, ...] = ()

    def section(self, name: str) -> dict:
        return dict(self.sections.get(name) or {})

    def has(self, name: str) -> bool:
        return name in self.sections

    @property
    def stages(self) -> list[str]:
        """The stages this recipe runs, in order."""
        optional = {"finetune", "prune", "export", "validate", "profile"}
        return [s for s in STAGE_ORDER if s not in optional or self.has(s)]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, **copy.deepcopy(self.sections)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
