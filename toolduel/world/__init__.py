"""The embedded synthetic tool world: functions, seeded samples, held-out sets, warm-start data.

catalog.py        parameter and function specs, value pools, the world version
functions.py      the world's functions by domain, with their phrasings; lookups and intent words
surface.py        the surface forms of values ("a dozen" = 12, "kilometers" = km)
phrasing.py       the plain phrasing and the perturbation kinds
generator.py      seeded samples (one call, two calls, no call); train / held-out split by query hash
heldout.py        the named held-out sets read by ``toolduel eval --data world:<sets>``
training_data.py  warm-start rows for the FC model and the query model
tiny_models.py    byte-level BPE tokenizer with a tools chat template; a tiny Qwen2 from a config
commands.py       ``toolduel world sample``

The world supplies data only: its players are trained by :mod:`toolduel.training`.
"""
