"""``kdtool score``: the official SQuAD evaluation of a predictions file."""

from __future__ import annotations

import json

import click

from kdtool.errors import InputError, json_error, require_file
from kdtool.metrics import DEFAULT_LANG, LANGUAGES


def load_predictions(path) -> dict[str, str]:
    p = require_file(path, "predictions file")
    try:
        obj = json.loads(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    except ValueError as err:  # JSONDecodeError, or an integer of more than 4300 digits
        raise json_error(p, err) from None
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise InputError(f"{p}: predictions must be a JSON object mapping question id to answer text")
    return obj


@click.command("score")
@click.argument("data", type=click.Path())
@click.argument("predictions", type=click.Path())
@click.option("--lang", default=DEFAULT_LANG, show_default=True, type=click.Choice(sorted(LANGUAGES)),
              help="Answer normalisation of the F1/EM metric (es: MLQA rules, en: SQuAD).")
def command(data, predictions, lang):
    """Score PREDICTIONS ({"question id": "answer"}) against the SQuAD file DATA.

    Prints JSON like the official script: exact_match and f1 (percentages), total, missing, and
    HasAns/NoAns parts for SQuAD v2.0.
    """
    from kdtool.data import load_squad
    from kdtool.metrics import squad_evaluate

    ds = load_squad(data)
    preds = load_predictions(predictions)
    click.echo(json.dumps(squad_evaluate(ds.examples, preds, lang)))
