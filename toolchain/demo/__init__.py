"""``kdtool demo``: the whole pipeline in minutes on a CPU, on data and models it makes itself.

    synthetic  a templated Spanish extractive-QA dataset (train and dev), deterministic per seed
    pipeline   run_demo(DemoConfig): dataset, tokenizer and base model, then the same recipe
               stages as ``kdtool run`` (finetune, distill, export, validate, profile, report)
    report     report.md / report.json of a run, and the printed summary
"""
