"""Q3 final: the chosen FC recipe's model on the held-out world sets, greedy, the project's evaluate()."""
import sys
from common import *
from toolduel.evaluate import evaluate
from toolduel.world.heldout import load_world_set
from toolduel.world.phrasing import PERTURBATIONS
path = sys.argv[1]; tag = sys.argv[2]
m, tok = load(torch.bfloat16, path)
m.set_attn_implementation("sdpa")
chat = TransformersChatModel.from_objects(m, tok, chat_template=COMPACT, tool_prompt="template", batch_size=32, name=tag)
res = {}
sets = [("plain", 100), ("hard", 100), ("two_call", 100), ("no_call", 100)] + [(k, 50) for k in PERTURBATIONS]
for name, limit in sets:
    t = time.perf_counter()
    s = evaluate(chat, load_world_set(name, limit=limit), f"/tmp/heldout_{tag}/{name}",
                 config=GenerationConfig(max_new_tokens=96, temperature=0.0), batch_size=100, progress=False)
    res[name] = {"accuracy": s["accuracy"], "n": s["n"], "errors": s["error_types"], "s": time.perf_counter() - t}
    if name == "hard":
        res[name]["per_category"] = {k: v["accuracy"] for k, v in s["per_category"].items()}
    print(name, res[name], flush=True)
    save_json(f"heldout_{tag}.json", res)
