"""Never finishes importing (a loop holding the GIL): the worker never answers its load."""

import torch

while True:
    pass


class Adam(torch.optim.Adam):
    pass
