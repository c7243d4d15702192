"""Train GPT-style language models on the token arrays pybpe writes (`X.bin` + `X.bin.json`).

`python -m training train|generate|plot` is the command line; the modules are the API:
model.py (the GPT), data.py (token arrays), config.py (presets and keys), train.py (the loop),
checkpoint.py, generate.py (sampling with a KV cache), plot.py (loss curves).
"""

from training.errors import TrainingError

__all__ = ["TrainingError"]
