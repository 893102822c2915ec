"""The referee both programs share: is a query valid, and did the FC model fail on it?

validity.py  the rule check of a query against its gold calls, with a :class:`Lexicon`
roles.py     its role half: is each value said in the role of its parameter?
tool_list.py the check of an edited tool list: do the gold calls stay the one right answer?
tool_grammar.py  tool edits the query model writes after its request: parsed, applied, checked
judge.py     a model that verifies (or solves) queries the rules let through; cached verdicts
outcome.py   score_queries: the gate, then the FC model's answers, checked; pool records
rewards.py   the FC reward and the query reward (pure math, and TRL reward functions)
"""
