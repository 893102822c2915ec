"""The black-box attack (``toolduel attack``): a query model learns to break an FC model behind an endpoint.

config.py   BlackBoxConfig: the endpoint, the budget, and the attack, judge and trainer groups
run.py      run_blackbox: the attack and the harvest through the ledger, the adversarial set, the report
ledger.py   every query scored once and recorded as it arrives; the request budget
"""
