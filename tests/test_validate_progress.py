"""validate and predict report progress in the one shape (kdtool.progress): a line per model and the
windows scored as a count of task "score NAME", unit "win", ending at the total."""

from __future__ import annotations

from kdtool.engines import load_engine
from kdtool.predict import features_for, predict
from kdtool.validate import ValidateConfig, validate


def test_validate_counts_every_window_of_every_model(roberta_dir, bert_dir, squad_file):
    events = []
    result = validate(ValidateConfig(models=(str(roberta_dir), str(bert_dir)), data=str(squad_file), device="cpu",
                                     batch_size=3), progress=events.append)
    assert [s.name for s in result.scores] == ["roberta", "bert"]
    lines = [e.message for e in events if e.message]
    assert len(lines) == 2 and lines[0].startswith("scoring roberta on ") and lines[1].startswith("scoring bert on ")
    for name in ("roberta", "bert"):
        counts = [e for e in events if e.task == f"score {name}"]
        assert counts and all(e.unit == "win" for e in counts)
        assert [e.done for e in counts] == sorted(e.done for e in counts)  # absolute, growing
        assert counts[-1].done == counts[-1].total


def test_predict_without_progress_and_with_it_answers_alike(roberta_dir, squad_file):
    from kdtool.data import load_squad

    examples = load_squad(squad_file).examples
    engine = load_engine(roberta_dir, device="cpu")
    try:
        events = []
        plain, counted = predict(engine, examples), predict(engine, examples, progress=events.append, task="t")
        assert {k: p.text for k, p in plain.items()} == {k: p.text for k, p in counted.items()}
        assert events[-1].task == "t" and events[-1].done == len(features_for(engine, examples))
    finally:
        engine.close()
