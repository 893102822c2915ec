"""The embedded synthetic tool world: functions, seeded samples, held-out sets, tiny models.

catalog.py     parameter and function specs, value pools, the world version
functions.py   the world's functions by domain, with their plain and paraphrase phrasings
surface.py     the surface forms of values ("a dozen" = 12, "kilometers" = km)
phrasing.py    the plain phrasing and the perturbation kinds
generator.py   seeded samples (one call, two calls, no call); train / held-out split by query hash
heldout.py     the named held-out sets read by ``toolduel eval --data world:<sets>``
tiny_models.py byte-level BPE tokenizer with a tools chat template; a tiny Qwen2 from a config
warm_start.py  warm-start data and TRL SFTTrainer fine-tuning of the FC and query models
build.py       build both tiny models once and cache them by world version and budget
commands.py    ``toolduel world sample | build``
"""
