"""Peak memory of four framework adapters on one model in one process vs one adapter.

Each measurement runs in a fresh process that imports the same frameworks, builds a random-weight
Qwen2 model large enough to see (default ~110M parameters, ~440 MB in float32), then builds one
adapter (LangChain) or four (rerankers, LangChain, LlamaIndex, pyserini) for that model and ranks
one query through each. Target: peak RSS ratio (four / one) <= 1.05, i.e. one shared engine.

    python benchmarks/memory.py --out runs/memory.json [--backend transformers]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CHILD = r"""
import json, resource, sys
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode
from r1ranker_plugins import IRanker
from r1ranker_plugins.integrations.langchain import R1RankerCompressor
from r1ranker_plugins.integrations.llama_index import R1RankerPostprocessor
from r1ranker_plugins.integrations.pyserini import PyseriniReranker
from r1ranker_plugins.integrations.rerankers import R1Ranker

model, backend, adapters = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = {"max_new_tokens": 4, "max_candidate_tokens": 32}
texts = ["solar panels make electricity", "bananas are yellow", "inverters convert current"]
compressor = R1RankerCompressor(model=model, backend=backend, options=options)
compressor.compress_documents([Document(page_content=t) for t in texts], "solar")
if adapters == 4:
    R1Ranker(model, backend=backend, **options).rank("solar", texts)
    post = R1RankerPostprocessor(model=model, backend=backend, options=options)
    post.postprocess_nodes([NodeWithScore(node=TextNode(text=t)) for t in texts], query_str="solar")
    PyseriniReranker(searcher=None, ranker=IRanker(model, backend, **options)).ranker.rank("solar", texts)
stats = compressor.ranker.engine.stats()
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "model_loads": stats["model_loads"]}))
"""


def build_model(path: Path, hidden: int, layers: int) -> str:
    """A random Qwen2 of the given size with the tiny model's tokenizer (weights are random)."""
    if (path / "config.json").exists():
        return str(path)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from r1ranker_plugins.testing import tiny_model

    base = tiny_model()
    config = AutoConfig.from_pretrained(base)
    config.hidden_size, config.num_hidden_layers = hidden, layers
    config.layer_types = ["full_attention"] * layers
    config.intermediate_size, config.num_attention_heads, config.num_key_value_heads = 4 * hidden, hidden // 64, 2
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    return str(path)


def measure(model: str, backend: str, adapters: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model, backend, str(adapters)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--model-dir", type=Path, default=Path.home() / ".cache" / "r1ranker_plugins" / "memory-qwen2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    model = build_model(args.model_dir, args.hidden, args.layers)
    one, four = measure(model, args.backend, 1), measure(model, args.backend, 4)
    row = {
        "backend": args.backend,
        "model_mb": round(sum(f.stat().st_size for f in Path(model).glob("*.safetensors")) / 2**20, 1),
        "one_adapter_peak_rss_mb": round(one["peak_rss_mb"], 1),
        "four_adapters_peak_rss_mb": round(four["peak_rss_mb"], 1),
        "ratio": round(four["peak_rss_mb"] / one["peak_rss_mb"], 4),
        "model_loads_with_four": four["model_loads"],
        "benchmark_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps([row]))
    print(
        f"\n| model MB | one adapter MB | four adapters MB | ratio | loads |\n|---|---|---|---|---|\n"
        f"| {row['model_mb']} | {row['one_adapter_peak_rss_mb']} | {row['four_adapters_peak_rss_mb']} | "
        f"{row['ratio']} | {row['model_loads_with_four']} |",
        file=sys.stderr,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([row], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
