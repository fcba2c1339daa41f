"""kdtool.progress: one event shape, and a console that writes readable lines when it is not a terminal."""

import io

from kdtool.progress import Event, console, count, counter, prefixed, say


def test_a_log_file_gets_a_line_per_tenth_not_a_frame_per_update():
    out = io.StringIO()
    with console(out, tty=False) as progress:
        add = counter(progress, "train", total=1000, unit="step")
        for _ in range(1000):
            add()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "train: 1/1000 step (0%)"
    assert lines[-1] == "train: 1000/1000 step (100%)"
    assert 10 <= len(lines) <= 12


def test_a_task_that_counts_again_from_the_start_gets_its_lines_again():
    out = io.StringIO()
    progress = console(out, tty=False)
    for total in (100, 50):  # a finetune run, then a distill run: both count "train"
        for done in range(1, total + 1):
            count(progress, "train", done, total, "step")
    lines = out.getvalue().splitlines()
    assert lines.count("train: 100/100 step (100%)") == 1 and lines.count("train: 50/50 step (100%)") == 1
    assert "train: 1/50 step (2%)" in lines and "train: 25/50 step (50%)" in lines and "train: 30/100 step (30%)" in lines


def test_messages_pass_through_with_a_prefix_and_none_is_silent():
    out = io.StringIO()
    progress = prefixed(console(out, tty=False), "    ")
    say(progress, "[1/6] reference logits")
    progress(Event(message="done", task="x", done=1, total=1))
    assert out.getvalue().splitlines() == ["    [1/6] reference logits", "    done", "x: 1/1 it (100%)"]
    say(None, "nobody listens")
    count(None, "x", 1)


def test_no_bars_keeps_messages_only():
    out = io.StringIO()
    progress = console(out, tty=False, bars=False)
    count(progress, "score", 5, 10)
    say(progress, "scored")
    assert out.getvalue() == "scored\n"


def test_a_terminal_gets_a_tqdm_bar():
    out = io.StringIO()
    with console(out, tty=True) as progress:
        count(progress, "profile", 3, 4, unit="run")
        assert progress._open["profile"].n == 3
    assert "profile" in out.getvalue()
