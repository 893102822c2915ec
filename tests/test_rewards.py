import json
import pickle

import pytest

from toolduel.models.base import Generation
from toolduel.referee.outcome import adversarial_sample, score_queries
from toolduel.referee.rewards import (
    QueryReward,
    QueryRewardSettings,
    attack_value,
    fc_reward,
    get_fc_reward,
    near_duplicates,
    query_rewards,
)
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.lexicon import world_lexicon

CONVERT = Tool("convert_length", parameters={"type": "object", "required": ["value", "unit"], "properties": {
    "value": {"type": "number"}, "unit": {"type": "string", "enum": ["km", "mi"]}}})
SEED = Sample(id="seed-1", tools=[CONVERT], messages=[{"role": "user", "content": "Convert 12 km"}],
              gold=[GoldCall.from_call(Call("convert_length", {"value": 12, "unit": "km"}), CONVERT)],
              category="plain")
SEED_JSON = json.dumps(SEED.to_dict())
RIGHT = '<tool_call>\n{"name": "convert_length", "arguments": {"value": 12, "unit": "km"}}\n</tool_call>'
WRONG_VALUE = '<tool_call>\n{"name": "convert_length", "arguments": {"value": 13, "unit": "km"}}\n</tool_call>'


def test_fc_reward_is_the_checker_score():
    completions = [
        RIGHT,                                                   # exact gold -> 1
        WRONG_VALUE,                                             # wrong value -> 0
        "I cannot help.",                                        # no call where one was due -> 0
        [{"role": "assistant", "content": RIGHT}],               # conversational completion -> 1
        "<tool_call>{broken",                                    # unparseable -> 0, no exception
    ]
    assert fc_reward(completions, [SEED_JSON] * 5) == [1.0, 0.0, 0.0, 1.0, 0.0]


def test_partial_credit_rewards_the_right_function_and_arguments():
    reward = get_fc_reward(partial=True)
    right_function_one_wrong_value, nothing = reward([WRONG_VALUE, "no"], [SEED_JSON, SEED_JSON])
    assert 0.0 < right_function_one_wrong_value < 1.0  # right function, one of two arguments right
    assert nothing == 0.0
    assert reward([RIGHT], [SEED_JSON]) == [1.0]
    assert pickle.loads(pickle.dumps(reward)).partial is True  # TRL may pickle reward functions


@pytest.mark.parametrize("form, p, expected", [
    ("attack", 0.0, 1.0),        # FC always fails: full attack reward
    ("attack", 0.75, 0.25),
    ("learnability", 0.5, 1.0),  # peaks where the FC model sometimes succeeds
    ("learnability", 0.0, 0.0),  # an impossible query earns nothing
    ("learnability", 1.0, 0.0),
    ("band", 0.0, 0.0),          # outside the band (0.1, 0.9): not paid
    ("band", 0.5, 0.5),
])
def test_attack_value_forms(form, p, expected):
    assert attack_value(p, form, band=(0.1, 0.9)) == pytest.approx(expected)


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="reward form must be one of"):
        QueryRewardSettings(form="greedy")


def test_near_duplicates_flag_later_copies_only():
    queries = ["convert 12 km to miles", "Convert 12 km to miles!", "how far is 12 km in miles", ""]
    assert near_duplicates(queries, threshold=0.9) == [False, True, False, False]


def test_query_rewards_combine_validity_success_and_penalties():
    settings = QueryRewardSettings(invalid_penalty=-1.0, duplicate_penalty=0.2,
                                   length_penalty_per_char=0.01, free_chars=10)
    queries = ["12 km please", "12 km please", "twelve km", "x" * 30]
    rewards = query_rewards(queries, valid=[True, True, False, True], fc_success=[0.25, 0.25, None, 1.0],
                            solvable=[True, True, False, True], settings=settings)
    assert rewards == pytest.approx([
        0.75 - 0.02,        # 1 - p, two characters over the free length
        0.75 - 0.2 - 0.02,  # the same query again: duplicate penalty
        -1.0,               # invalid: the penalty asked for
        0.0 - 0.2,          # FC model always right: nothing, and 20 characters too long
    ])


def test_the_floor_pays_nothing_for_a_query_nobody_answered():
    queries = ["a", "b", "c", "d", "e"]
    rewards = query_rewards(queries, valid=[True, True, True, False, True], fc_success=[0.0, 0.0, 0.75, None, 1.0],
                            solvable=[False, True, True, False, True], settings=QueryRewardSettings())
    assert rewards == pytest.approx([
        0.0,    # every answer wrong and no reference solved it: maybe impossible, not paid
        1.0,    # every answer wrong, but a reference solver answered it: the strongest attack
        0.25,   # right on 3 of 4 answers: 1 - p
        None,   # invalid: left out of the update (TRL gives a None no advantage), by default
        0.0,    # always right: no failure
    ])
    without = query_rewards(queries[:1], [True], [0.0], [False], QueryRewardSettings(floor=False))
    assert without == [1.0]  # the floor off: 1 - p_F, unanswerable or not


class ScriptedFC:
    """An FC model that answers right unless the query spells the number out."""

    name = "scripted"

    def __init__(self):
        self.prompts = []

    def generate(self, conversations, tools, config=None):
        self.prompts.extend(conversations)
        return [Generation(WRONG_VALUE if "twelve" in c[-1]["content"] else RIGHT) for c in conversations]


def test_score_queries_gates_validity_and_scores_k_answers():
    fc = ScriptedFC()
    queries = ["Please convert twelve km", "Convert 12 km now", "Convert some distance",
               "convert_length(value=12, unit='km')"]
    outcomes = score_queries(fc, [SEED] * 4, queries, k=2, lexicon=world_lexicon())
    assert [o.valid for o in outcomes] == [True, True, False, False]
    assert outcomes[2].reasons[0].startswith("ungrounded")  # 12 was dropped
    assert any(r.startswith("leak") for r in outcomes[3].reasons)  # call syntax in the query
    assert [o.fc_success for o in outcomes] == [0.0, 1.0, None, None]
    assert len(fc.prompts) == 4  # only valid queries are played, k=2 times each
    assert outcomes[0].verdicts[0]["kind"] == "wrong_value"


def test_query_reward_is_a_trl_reward_function():
    queries = ["Please convert twelve km", "Convert 12 km now", "nothing"]
    reward = QueryReward(ScriptedFC(), k=1, lexicon=world_lexicon(),
                         settings=QueryRewardSettings(floor=False, invalid_penalty=-1.0))
    assert reward(queries, sample=[SEED_JSON] * 3) == [1.0, 0.0, -1.0]  # fooled it, did not, invalid
    assert len(reward.history) == 1 and reward.history[0][0].fc_outputs == [WRONG_VALUE]
    # the defaults: the scripted model never answers "twelve" right, so nothing shows that query
    # answerable (no reward), and the invalid query is left out of the update
    assert QueryReward(ScriptedFC(), k=1, lexicon=world_lexicon())(queries, sample=[SEED_JSON] * 3) == [0.0, 0.0, None]


def test_adversarial_sample_replaces_only_the_last_user_message():
    seed = Sample(id="s", tools=[CONVERT], gold=SEED.gold, messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "old"}])
    attacked = adversarial_sample(seed, "new query")
    assert attacked.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "new query"}]
    assert seed.messages[1]["content"] == "old"  # the seed is untouched
