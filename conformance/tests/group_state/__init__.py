"""Outside torch Adams that keep their state per param group, not in ``optimizer.state[p]``.

Written as a training framework's author writes them (their own names and containers): moments
as lists in the group dict, or one flat buffer per group for m and v (DeepSpeed/apex style) with
views of it handed to the math, and a step count per group. Correct ones, and planted mistakes
that only a run with several groups (or a state written from outside) shows."""
