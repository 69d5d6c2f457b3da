"""A stand-in for ``vllm run-batch``: answers a batch input file with the simulated executor.

``python -m testing.batch_command -i IN -o OUT [--p 0.9] [--log FILE] [--exit-code N]``
reads the batch API's JSONL and writes its output format, as ``vllm run-batch`` does, so
``model.batch=command`` can be tested end to end without a GPU. ``--log`` appends one line
per answered request (its ``custom_id`` and seed), for tests that must prove no request was
answered twice; ``--exit-code`` fails on purpose after writing nothing.
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.event_loop import run_async
from providers.base import Message, Sampling
from providers.simulated import SimulatedConfig, SimulatedProvider


def answer(line: dict, simulated: SimulatedProvider) -> dict:
    """One output line for one input line."""
    body = line["body"]
    messages = [Message(m["role"], m["content"]) for m in body["messages"]]
    fields = ("temperature", "top_p", "max_tokens", "seed", "n")
    sampling = Sampling(**{k: body[k] for k in fields if k in body})
    result = run_async(simulated.chat(messages, sampling))
    texts = result.samples or [result.content]
    reply = {
        "id": f"cmpl-{line['custom_id']}",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "total_tokens": result.usage.prompt_tokens + result.usage.completion_tokens,
        },
    }
    return {
        "id": f"vllm-{line['custom_id']}",
        "custom_id": line["custom_id"],
        "response": {"status_code": 200, "request_id": line["custom_id"], "body": reply},
        "error": None,
    }


def main(argv: list[str] | None = None) -> int:
    """Answer ``-i`` into ``-o``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m testing.batch_command")
    parser.add_argument("-i", "--input", required=True)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--p", type=float, default=1.0, help="per-step accuracy")
    parser.add_argument("--log", default="", help="append one line per answered request")
    parser.add_argument("--exit-code", type=int, default=0, help="fail with this code")
    parser.add_argument("--model", default="", help="accepted and ignored, as vllm's flag")
    args = parser.parse_args(argv)
    if args.exit_code:
        print("batch_command: failing on purpose (CUDA out of memory)", file=sys.stderr)
        return args.exit_code
    simulated = SimulatedProvider(SimulatedConfig(p=args.p))
    with open(args.input, encoding="utf-8") as source, open(args.output, "w") as sink:
        log = open(args.log, "a", buffering=1) if args.log else None  # noqa: SIM115
        for text in source:
            line = json.loads(text)
            sink.write(json.dumps(answer(line, simulated)) + "\n")
            if log is not None:
                seed = line["body"].get("seed")
                log.write(json.dumps({"custom_id": line["custom_id"], "seed": seed}) + "\n")
        if log is not None:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
