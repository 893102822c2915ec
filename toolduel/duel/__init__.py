"""The duel (``toolduel run``): alternating rounds of attack, harvest, defend, guard and evaluate.

config.py    GameConfig: the duel's settings, composing the attack, judge and trainer groups
loop.py      run_game: the run folder's state, the phases in order, resume, the final export
players.py   round 0's players (the embedded world's, or configured), a round's checkpoints loaded to generate
attack.py    phase 1: GRPO on the query model against the frozen FC model
harvest.py   phase 2: the trained query model's valid, successful queries join the adversarial pool
defend.py    phase 3: SFT (or GRPO) of the FC model on the pool plus replayed seed data
guard.py     phase 4: replay that keeps every kind of request; the defended model kept only if it lost none
evaluate.py  phase 5: held-out accuracy, and the round's attack against the defended FC model
"""
