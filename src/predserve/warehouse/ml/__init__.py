"""The ML table functions (ML.PREDICT, ML.EVALUATE, ...): one handler per function
(functions.py), with the explanations (explain.py) and the linear weights (weights.py) they
report. They read trained models (models/) and ask each model's registry entry what it can do."""
