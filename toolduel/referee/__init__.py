"""The referee both programs share: is a query valid, and did the FC model fail on it?

validity.py  the rule check of a query against its gold calls, with a :class:`Lexicon`
judge.py     a model that verifies (or solves) queries the rules let through; cached verdicts
outcome.py   score_queries: the gate, then the FC model's answers, checked; pool records
rewards.py   the FC reward and the query reward (pure math, and TRL reward functions)
"""
