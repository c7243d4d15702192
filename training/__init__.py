"""Train GPT-style language models on the token arrays pybpe writes (`X.bin` + `X.bin.json`).

`python -m training train|generate|plot|prepare|experiment|sweep|report` is the command line
(__main__.py); the modules are the API: model.py (the GPT), data.py (token arrays), config.py
(presets and keys), train.py (the loop), checkpoint.py, generate.py (sampling with a KV cache),
perplexity.py, datasets.py (the data sets prepare knows), prepare.py (a data set's text ->
token files), experiments.py (the recipes: prepare, train, report), report.py (the report
over finished runs), plot.py (loss curves and the figure helpers), files.py (atomic writes).
"""

from training.errors import TrainingError

__all__ = ["TrainingError"]
