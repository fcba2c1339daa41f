"""``kdtool demo``: the whole pipeline in minutes on a CPU, on data and models it makes itself.

    synthetic  a templated Spanish extractive-QA dataset (train and dev), deterministic per seed
    pipeline   run_demo(DemoConfig): dataset, tokenizer and base model, then the same recipe
               stages as ``kdtool run`` (finetune, distill, export, validate, profile, report)

The run report (report.md / report.json and the printed summary) is the recipe runner's:
:mod:`kdtool.recipes.report`.
"""
