#!/usr/bin/env python3
"""Prompt-injection input guard: held-out precision/recall/FPR, tau2 false positives, latency.

    .venv/bin/python bench/injection_classifier.py
    .venv/bin/python bench/injection_classifier.py --tau2 ../shared/tau2/retail/tasks_train.json

Rows:

* held-out (text-hash split, the one the tests assert on): attack-vs-benign precision/recall,
  per-class precision/recall, benign FPR, training time;
* leave-templates-out: the same model trained with whole corpus templates held out (a text's
  template decides its split), a harsher estimate because the corpus is template-generated;
* tau2 retail train tasks as benign customer text: `reason_for_call + known_info` per task, and
  every sentence of those separately; FPR = share the InputGuard does not "allow" (flag or block),
  and the classifier-only share at P(attack) >= 0.5;
* latency: `mark_untrusted` on a ~1 KB benign order JSON (goal < 50 µs), `InputGuard.check` on a
  short user message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from pathlib import Path

from benchkit import summarise

from concierge.guardrails.input import InputGuard, mark_untrusted
from concierge.guardrails.input.classifier import InjectionClassifier, load_corpus

ORDER = {
    "order_id": "#W2378156", "user_id": "yusuf_rossi_9620",
    "address": {"address1": "763 Broadway", "address2": "Suite 135", "city": "Philadelphia", "country": "USA",
                "state": "PA", "zip": "19122"},
    "items": [
        {"name": "Mechanical Keyboard", "product_id": "1656367028", "item_id": "1151293680", "price": 272.33,
         "options": {"switch type": "linear", "backlight": "RGB", "size": "full size"}},
        {"name": "Smart Thermostat", "product_id": "4896585277", "item_id": "4983901480", "price": 262.47,
         "options": {"compatibility": "Apple HomeKit", "color": "black"}},
    ],
    "fulfillments": [{"tracking_id": ["843053632392"], "item_ids": ["1151293680", "4983901480"]}],
    "status": "delivered",
    "payment_history": [{"transaction_type": "payment", "amount": 534.8, "payment_method_id": "credit_card_9513926"},
                        {"transaction_type": "refund", "amount": 0.0, "payment_method_id": "credit_card_9513926"}],
}


def tau2_texts(path: Path) -> tuple[list[str], list[str]]:
    tasks = json.loads(path.read_text())
    whole, sentences = [], []
    for task in tasks:
        instructions = (task.get("user_scenario") or {}).get("instructions") or {}
        if isinstance(instructions, str):
            parts = [instructions]
        else:
            parts = [instructions.get("reason_for_call") or "", instructions.get("known_info") or ""]
        text = " ".join(p.strip() for p in parts if p and p.strip())
        if text:
            whole.append(text)
            sentences.extend(s for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 3)
    return whole, sentences


def timed(fn, n: int) -> list[int]:
    fn()
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tau2", type=Path, default=Path("../shared/tau2/retail/tasks_train.json"))
    args = parser.parse_args()

    clf = InjectionClassifier.default()
    ev = clf.evaluate()
    print("## Held-out (text-hash split)")
    print("\n".join(ev.lines()))
    for text, truth, pred in ev.errors:
        print(f"  miss: {truth} -> {pred}: {text[:100]!r}")

    corpus = load_corpus()

    def grouped(e):
        return int.from_bytes(hashlib.blake2b((e.template or e.text).encode(), digest_size=4).digest()) % 5 == 0

    train = [e for e in corpus if not grouped(e)]
    test = [e for e in corpus if grouped(e)]
    lto = InjectionClassifier(train).evaluate(test)
    print("\n## Leave-templates-out (about 1/5 of templates held out)")
    print("\n".join(lto.lines()[1:]))

    guard = InputGuard()
    if args.tau2.is_file():
        whole, sentences = tau2_texts(args.tau2)
        print(f"\n## tau2 retail train tasks as benign text ({args.tau2})")
        for name, texts in (("task (reason_for_call + known_info)", whole), ("sentence", sentences)):
            verdicts = [guard.check(t) for t in texts]
            triggered = [(v, t) for v, t in zip(verdicts, texts, strict=True) if v.action != "allow"]
            clf_fp = sum(1 - clf.score(t)["benign"] >= 0.5 for t in texts)
            print(f"{name}: n={len(texts)} guard FPR {len(triggered) / len(texts):.3f} "
                  f"(blocked {sum(v.action == 'block' for v, _ in triggered)}), classifier-only FPR@0.5 "
                  f"{clf_fp / len(texts):.3f}")
            for v, t in triggered:
                print(f"  {v.action} {v.label} {v.score:.2f} {v.rules}: {t[:110]!r}")
    else:
        print(f"\n(tau2 tasks not found at {args.tau2}: skipping the tau2 FPR)")

    print("\n## Latency")
    blob = json.dumps(ORDER)
    rows = [
        summarise(f"mark_untrusted, {len(blob)} B benign order JSON", timed(lambda: mark_untrusted(blob, "tool:get_order_details"), 5000)),
        summarise("InputGuard.check, short user message", timed(lambda: guard.check("Where is my order #W2378156?"), 300)),
        summarise("InputGuard.check, 1 KB benign tool JSON", timed(lambda: guard.check(blob, source="tool"), 2000)),
    ]
    t0 = time.perf_counter()
    InjectionClassifier()
    print(f"training (fresh, whole pipeline): {time.perf_counter() - t0:.2f} s")
    for r in rows:
        print(f"{r['row']}: p50 {r['p50_us']:.1f} µs, p99 {r['p99_us']:.1f} µs (n={r['n']})")


if __name__ == "__main__":
    main()
