"""rerankers: load an r1ranker through `Reranker(..., model_type="r1ranker")`.

python examples/rerankers_quickstart.py                      # offline, tiny random-weight model
python examples/rerankers_quickstart.py --model Qwen/Qwen2.5-3B-Instruct --backend vllm
"""

from _common import parse_args, ranker_options
from rerankers import Reranker

import r1ranker_plugins.integrations.rerankers  # noqa: F401  (registers model_type="r1ranker")

args = parse_args(__doc__)
ranker = Reranker(
    args.model, model_type="r1ranker", strategy=args.strategy, backend=args.backend, verbose=0, **ranker_options(args)
)
results = ranker.rank(
    query="how do solar panels produce electricity",
    docs=[
        "Bananas are rich in potassium.",
        "Photovoltaic cells turn sunlight into direct current.",
        "The stock market closed higher on Friday.",
        "An inverter converts direct current into alternating current.",
    ],
    doc_ids=["banana", "pv", "stocks", "inverter"],
)
for result in results:
    print(result.rank, result.score, result.doc_id, result.text)
