"""Every command's options are its config's fields: each option's default is the field's default, and no field of
a config lacks an option unless it is marked recipe-only (kdtool.fields). The commands are the real click commands;
the configs the real library dataclasses."""

from __future__ import annotations

import dataclasses

import click
import pytest

from kdtool.answer import AnswerConfig
from kdtool.cli.answer import command as answer_command
from kdtool.cli.distill import command as distill_command
from kdtool.cli.export import command as export_command
from kdtool.cli.finetune import command as finetune_command
from kdtool.cli.profile import command as profile_command
from kdtool.cli.prune import command as prune_command
from kdtool.cli.serve import command as serve_command
from kdtool.cli.split import command as split_command
from kdtool.cli.validate import command as validate_command
from kdtool.data.split import SplitConfig
from kdtool.distill.config import DistillConfig, TrainConfig
from kdtool.export.config import ExportConfig
from kdtool.fields import settings, spelling, unspelled
from kdtool.profiles.config import ProfileConfig
from kdtool.prune.config import PruneConfig, parse_structures
from kdtool.serve.config import ServeConfig
from kdtool.validate import ValidateConfig

COMMANDS = {
    "export": (export_command, ExportConfig), "validate": (validate_command, ValidateConfig),
    "answer": (answer_command, AnswerConfig), "serve": (serve_command, ServeConfig),
    "profile": (profile_command, ProfileConfig), "finetune": (finetune_command, TrainConfig),
    "distill": (distill_command, DistillConfig), "prune": (prune_command, PruneConfig),
    "split": (split_command, SplitConfig),
}
# what a command's option gives and the field holds differ in form only: the field's own parser says they agree
SAME_AS = {"structures": parse_structures}


def options_by_name(command) -> dict[str, click.Option]:
    return {name: p for p in command.params if isinstance(p, click.Option) for name in (*p.opts, *p.secondary_opts)}


def default_of(command, param: click.Option):
    if param.required:
        return None  # no default: the field has none either (checked below)
    value = param.get_default(click.Context(command))
    if param.multiple and not value:
        return None  # a repeated option given no times: the field's "not given"
    if param.is_flag and param.flag_value is False:
        return True  # --no-fuse: the field is True until the flag is given
    return value


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_defaults_to_its_config_field(name):
    command, config = COMMANDS[name]
    options = options_by_name(command)
    checked = 0
    for s in settings(config):
        if s.recipe_only or s.spelling.argument or s.spelling.keys is not None:
            continue
        option = options.get(s.spelling.off if s.spelling.off and not s.spelling.option else s.spelling.names(s.name)[0])
        assert option is not None, f"kdtool {name}: config field {s.name} has no option {s.spelling.names(s.name)}"
        assert option.name == s.key, f"kdtool {name} {option.opts}: fills {option.name!r}, not the field {s.key!r}"
        default = default_of(command, option)
        if s.key in SAME_AS:
            default = SAME_AS[s.key](default)
        assert option.required == (s.default is dataclasses.MISSING or s.spelling.required), s.name
        field_default = None if s.default is dataclasses.MISSING else s.default
        assert default == field_default, (f"kdtool {name} {'/'.join(option.opts)} defaults to {default!r}, "
                                          f"its field {config.__name__}.{s.name} to {field_default!r}")
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("name", COMMANDS)
def test_no_config_field_lacks_an_option_unless_it_is_recipe_only(name):
    command, config = COMMANDS[name]
    assert unspelled(config) == [], f"{config.__name__}: fields declared without a spelling (kdtool.fields.setting)"
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    for s in settings(config):
        if s.spelling.argument:
            assert arguments, f"kdtool {name}: {s.name} is an argument, and the command takes none"


def test_prune_recovery_options_default_to_distills_fields():
    """prune's recovery options are distill's, under the names PruneConfig.recovery gives them."""
    options = options_by_name(prune_command)
    renamed = spelling(PruneConfig, "recovery").keys
    own = {s.key for s in settings(PruneConfig)}
    checked = 0
    for s in settings(DistillConfig):
        if s.recipe_only or s.spelling.argument or (s.key in own and s.key not in renamed) or s.key in (
                "student", "student_init", "work_dir"):
            continue
        option = options[renamed.get(s.key) or (s.spelling.off if s.spelling.off and not s.spelling.option
                                                else s.spelling.names(s.name)[0])]
        assert default_of(prune_command, option) == (None if s.default is dataclasses.MISSING else s.default), s.name
        checked += 1
    assert checked > 20 and "--recovery-schedule" in options


def test_the_window_and_the_language_have_one_default_everywhere():
    """--max-length / --max-seq-length and --lang: one default for every command that has them."""
    from kdtool.cli.score import command as score_command
    from kdtool.metrics import DEFAULT_LANG

    lengths, langs = set(), set()
    for command, _ in COMMANDS.values():
        options = options_by_name(command)
        for opt in ("--max-length", "--max-seq-length"):
            if opt in options:
                lengths.add(default_of(command, options[opt]))
        if "--lang" in options:
            langs.add(default_of(command, options["--lang"]))
    langs.add(default_of(score_command, options_by_name(score_command)["--lang"]))
    assert lengths == {None}  # not given: 384, fitted to the model (kdtool.data.fit_window)
    assert langs == {DEFAULT_LANG}
